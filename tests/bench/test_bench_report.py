"""Unit tests of the bench report's rules (scripts/bench_*.py, profile_statements.py): CPU per
request, the run conditions that decide whether targets are judged, when a P9 step holds, and
statement time per request.
Run: python3 -m unittest discover -s tests/bench (scripts/bench-tests.sh)."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

import bench_conditions  # noqa: E402
import bench_cpu  # noqa: E402
import bench_flow  # noqa: E402
import bench_report  # noqa: E402
import profile_statements  # noqa: E402

CEILINGS = {"http_rps": 100_000.0, "redis_eval_per_s": 100_000.0, "pg_hot_row_tps": 3_000.0, "pg_commit_tps": 7_000.0}


def write(raw, name, text):
    with open(os.path.join(raw, name), "w") as f:
        f.write(text)


class CpuPerRequest(unittest.TestCase):
    def test_ticks_over_requests_in_microseconds(self):
        before = {"app": 100, "pg": 50, "redis": 10, "tick_hz": 100}
        after = {"app": 300, "pg": 60, "redis": 30, "tick_hz": 100}
        # 2 s of app CPU over 100,000 requests = 20 µs each
        got = bench_cpu.per_request(before, after, 100_000)
        self.assertAlmostEqual(got["app"], 20.0)
        self.assertAlmostEqual(got["pg"], 1.0)
        self.assertAlmostEqual(got["redis"], 2.0)
        self.assertAlmostEqual(got["total"], 23.0)

    def test_a_process_not_measured_is_none_not_zero(self):
        got = bench_cpu.per_request({"app": 1, "pg": None, "redis": 1, "tick_hz": 100},
                                    {"app": 2, "pg": None, "redis": 1, "tick_hz": 100}, 10)
        self.assertIsNone(got["pg"])
        self.assertIsNone(got["total"])
        self.assertIsNone(bench_cpu.per_request({"app": 1}, {"app": 2}, 0))

    def test_row_cpu_reads_the_marks_and_the_requests_of_each_run(self):
        with tempfile.TemporaryDirectory() as raw:
            for i, app in ((1, 200), (2, 400), (3, 300)):
                write(raw, f"cpu_p4_{i}.jsonl", json.dumps({"app": 0, "pg": 0, "redis": 0, "tick_hz": 100}) + "\n"
                      + json.dumps({"app": app, "pg": 0, "redis": 100, "tick_hz": 100}) + "\n")
                write(raw, f"p4_{i}.txt", "  100000 requests in 10.00s, 1 MB read\n")
            got = bench_cpu.row_cpu(raw, "p4_*")
            self.assertEqual(got["runs"], 3)
            self.assertAlmostEqual(got["app"], 30.0)  # the median of 20, 40 and 30 µs
            self.assertAlmostEqual(got["redis"], 10.0)

    def test_a_generators_own_cpu_is_its_childs_rusage_over_its_requests(self):
        with tempfile.TemporaryDirectory() as raw:
            out = os.path.join(raw, "gencpu_wrk_1.json")
            # a child that burns some CPU in user space
            code = bench_cpu.child(out, [sys.executable, "-c", "sum(range(3_000_000))"])
            self.assertEqual(code, 0)
            with open(out) as f:
                used = json.load(f)
            self.assertGreater(used["user"], 0.0)
            for i, (user, sys_s) in ((2, (1.0, 8.0)), (3, (3.0, 6.0)), (4, (2.0, 7.0))):
                write(raw, f"gencpu_gen_ceiling_{i}.json", json.dumps({"user": user, "sys": sys_s}))
                write(raw, f"gen_ceiling_{i}.json", json.dumps({"metrics": {"http_reqs": {"values": {"count": 1_000_000}}}}))
            got = bench_cpu.generator_cpu(raw, "gen_ceiling_*")
            self.assertAlmostEqual(got["user"], 2.0)  # µs per request: the median of 1, 3 and 2
            self.assertAlmostEqual(got["sys"], 7.0)
            self.assertAlmostEqual(got["total"], 9.0)
            # wrk_1 has no requests on record: not measured rather than divided by zero
            self.assertIsNone(bench_cpu.generator_cpu(raw, "wrk_*"))

    def test_snapshot_reads_this_process(self):
        snap = bench_cpu.snapshot(str(os.getpid()), 0, "0")
        self.assertIsInstance(snap["app"], int)
        self.assertIsNone(snap["pg"])
        self.assertIsNone(snap["redis"])


class RunConditions(unittest.TestCase):
    def conds(self, load, ceilings, history):
        with tempfile.TemporaryDirectory() as raw:
            if load is not None:
                write(raw, "loadavg_before.txt", f"{load} 0.40\n")
            write(raw, "loadavg_after.txt", "1.00 0.50\n")
            return bench_conditions.conditions(raw, ceilings, history)

    def test_a_quiet_run_near_the_best_is_comparable(self):
        history = [{"ceilings": {k: v * 1.1 for k, v in CEILINGS.items()}}]
        c = self.conds(0.2, CEILINGS, history)
        self.assertTrue(c["comparable"], c["reasons"])
        self.assertEqual(c["load_after"], {"1m": 1.0, "5m": 0.5})

    def test_a_ceiling_more_than_15_percent_below_the_best_is_not_comparable(self):
        history = [{"ceilings": CEILINGS}, {"ceilings": {**CEILINGS, "http_rps": 150_000.0}}]
        c = self.conds(0.1, CEILINGS, history)
        self.assertFalse(c["comparable"])
        self.assertIn("http_rps", c["reasons"][0])

    def test_a_busy_start_or_an_unrecorded_load_is_not_comparable(self):
        history = [{"ceilings": CEILINGS}]
        self.assertFalse(self.conds(0.6, CEILINGS, history)["comparable"])
        self.assertFalse(self.conds(None, CEILINGS, history)["comparable"])

    def test_the_first_full_run_is_judged_on_the_load_alone(self):
        c = self.conds(0.1, CEILINGS, [])
        self.assertTrue(c["comparable"], c["reasons"])
        self.assertEqual(c["history_runs"], 0)
        self.assertFalse(self.conds(0.7, CEILINGS, [])["comparable"])

    def test_only_the_last_ten_runs_count(self):
        history = [{"ceilings": {**CEILINGS, "http_rps": 1e9}}] + [{"ceilings": CEILINGS}] * 10
        self.assertTrue(self.conds(0.1, CEILINGS, history)["comparable"])

    def test_a_run_not_comparable_judges_no_target(self):
        rows = [{"pass": True, "target": ">= 0.5 x HTTP"}, {"pass": False, "target": ">= 5 x PG"}]
        judged = bench_report.judge(rows, {"comparable": False})
        self.assertEqual([r["pass"] for r in judged], [None, None])
        self.assertEqual([r["judged"] for r in judged], [False, False])
        page = bench_report.markdown({"generated_at": "now", "seconds_per_run": 5.0, "ceilings": {k: None for k in
                                      ("http_rps", "generator_rps", "locust_rps", "redis_eval_per_s", "pg_hot_row_tps", "pg_commit_tps")},
                                      "conditions": {"comparable": False, "reasons": ["busy"], "load_before": None,
                                                     "load_after": None, "history_runs": 0, "shortfall": {}},
                                      "rows": [{**r, "id": "P1", "workload": "w", "ours": 1.0, "unit": "req/s", "ceiling": "HTTP",
                                                "ceiling_value": 1.0, "ratio": 1.0, "note": ""} for r in judged]})
        self.assertIn("not judged", page)
        self.assertIn("**not comparable**", page)
        table = page.split("|---|---|---|---|---|---|---|---|---|")[1]
        self.assertNotIn("| pass |", table)
        self.assertNotIn("| FAIL |", table)

    def test_rows_with_one_redis_round_trip_read_against_the_floor(self):
        rows = [bench_report.row("P4", "poll", 30.0, "req/s", "HTTP", 100.0, 0.4, "", None, redis_floor=True),
                bench_report.row("P5", "charge", 30.0, "req/s", "PG", 10.0, 5.0, "x", None)]
        out = bench_report.with_floor(rows, 40.0)
        self.assertAlmostEqual(out[0]["floor_ratio"], 0.75)
        self.assertEqual(out[0]["note"], "0.75x the Redis-read floor")
        self.assertNotIn("floor_ratio", out[1])
        self.assertEqual(out[1]["note"], "x")
        self.assertFalse(any("redis_floor" in r for r in out), "the mark does not reach latest.json")
        # the target is still the ratio to HTTP
        self.assertEqual((out[0]["ratio"], out[0]["pass"]), (0.3, False))

    def test_no_floor_measured_leaves_the_note_alone(self):
        rows = [bench_report.row("P4", "poll", 30.0, "req/s", "HTTP", 100.0, 0.4, "n", None, redis_floor=True)]
        out = bench_report.with_floor(rows, None)
        self.assertIsNone(out[0]["floor_ratio"])
        self.assertEqual(out[0]["note"], "n")

    def test_the_half_rate_tail_is_the_median_beside_the_floors_at_that_rate(self):
        def run(p99, dropped):
            return json.dumps({"metrics": {"http_req_duration": {"values": {"p(99)": p99}}},
                               "floodgate": {"metrics": {"dropped_iterations": dropped}}})
        with tempfile.TemporaryDirectory() as raw:
            for i, (ours, bare, floor) in enumerate([(9.0, 2.0, 6.0), (8.0, 3.0, 5.0), (7.0, 1.0, 4.0)], 1):
                write(raw, f"p1_half_{i}.json", run(ours, 10 * i))
                write(raw, f"p1_half_bare_{i}.json", run(bare, 0))
                write(raw, f"p1_half_redis_{i}.json", run(floor, i))
            p99, note = bench_report.half_rate_tail(raw)
            self.assertEqual(p99, 8.0, "the app's runs only, not the floors' at the same rate")
            self.assertIn("the bare server's p99 2.00 ms, the Redis-read floor's 5.00 ms", note)
            self.assertIn("ours 10/20/30, bare 0/0/0, floor 1/2/3", note)

    def test_no_floor_at_half_rate_leaves_the_p99_without_a_note(self):
        with tempfile.TemporaryDirectory() as raw:
            write(raw, "p1_half_1.json", json.dumps({"metrics": {"http_req_duration": {"values": {"p(99)": 4.5}}}}))
            self.assertEqual(bench_report.half_rate_tail(raw), (4.5, ""))

    def test_record_appends_the_ceilings(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "history.json")
            bench_conditions.record(path, "t1", {**CEILINGS, "locust_rps": 1.0}, {"load_before": None, "comparable": True})
            bench_conditions.record(path, "t2", CEILINGS, {"load_before": None, "comparable": False})
            history = bench_conditions.read_history(path)
            self.assertEqual([h["generated_at"] for h in history], ["t1", "t2"])
            self.assertNotIn("locust_rps", history[0]["ceilings"])


class ProfileStatements(unittest.TestCase):
    def test_time_per_request_and_what_the_target_leaves(self):
        rows = profile_statements.parse([
            "100|5000|150.0|10.0|insert into idempotency_keys (user_id, key) values ($1, $2)\n",
            "100|100|50.0|0.0|select a || b from t\n",
            "not a row\n",
        ])
        self.assertEqual([r[4] for r in rows], ["insert into idempotency_keys (user_id, key) values ($1, $2)",
                                                "select a || b from t"])
        out = profile_statements.report("P5", 3000.0, 10_000, 10.0, rows)
        # 1,000 requests/s against 3,000 tps; 5x leaves 1e6 / 15,000 = 66.7 us
        self.assertIn("1,000 requests/s = 0.33x; 5x leaves 66.7 us per request", out)
        self.assertIn("16.0 us ( 1.0 planning)", out)
        self.assertIn("5.0 us ( 0.0 planning)", out)
        self.assertIn("21.0 us per request in all statements", out)

    def test_a_row_without_a_hot_row_target_gets_no_budget(self):
        out = profile_statements.report("P4", 3000.0, 10, 1.0, [])
        self.assertNotIn("leaves", out)


def summary(completed, failed, dropped, p95, seconds=10, interrupted=0):
    checks = [{"name": "flow completed", "passes": completed, "fails": failed}]
    if failed:
        checks.append({"name": "flow failed: pay", "passes": 0, "fails": failed})
    metrics = {"dropped_iterations": {"values": {"count": dropped}}, "http_reqs": {"values": {"count": completed * 6}}}
    for n in bench_flow.STEPS:
        metrics[f"http_req_duration{{name:{n}}}"] = {"values": {"p(95)": p95}}
    return {"root_group": {"checks": [], "groups": [{"name": "reserve and pay", "checks": checks}]},
            "state": {"testRunDurationMs": seconds * 1000}, "metrics": metrics,
            "floodgate": {"metrics": {"interrupted_iterations": interrupted}}}


class P9Steps(unittest.TestCase):
    def held(self, *args):
        with tempfile.TemporaryDirectory() as raw:
            write(raw, "p9_r40.json", json.dumps(summary(*args)))
            return bench_flow.step_held(raw, "40", 500), bench_flow.step(raw, "40")

    def test_a_step_holds_with_no_failure_few_drops_and_p95_in_bounds(self):
        ok, st = self.held(400, 0, 3, 120.0)
        self.assertTrue(ok)
        self.assertEqual(st["flows_per_s"], 40.0)
        self.assertEqual(st["failure_rate"], 0.0)

    def test_one_failed_flow_breaks_the_step(self):
        ok, st = self.held(399, 1, 0, 120.0)
        self.assertFalse(ok)
        self.assertEqual(st["failed_by_step"], {"pay": 1})

    def test_a_flow_cut_off_by_the_graceful_stop_counts_as_failed(self):
        ok, st = self.held(400, 0, 0, 120.0, 10, 2)
        self.assertFalse(ok)
        self.assertEqual((st["failed"], st["failed_by_step"]), (2, {"interrupted": 2}))

    def test_drops_over_one_percent_or_a_slow_step_break_it(self):
        self.assertFalse(self.held(400, 0, 10, 120.0)[0])
        self.assertFalse(self.held(400, 0, 0, 501.0)[0])


if __name__ == "__main__":
    unittest.main()
