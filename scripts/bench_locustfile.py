"""Locust on the bare ceiling server, for context beside wrk and floodgate-loadtest (P6)."""
from locust import HttpUser, constant, task


class Bare(HttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
