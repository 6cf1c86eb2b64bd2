//! floodgate-app: the Floodgate commerce and ticketing API.
//!
//! The binary is a thin CLI over this library (`serve`, `migrate`, `seed`, `admin`). Each
//! domain lives in its own module with its routes, rules and SQL; `platform` holds the
//! infrastructure they share and `http` assembles the router.

pub mod admin;
#[cfg(test)]
mod architecture_tests;
pub mod auth;
pub mod cart;
pub mod concerts;
pub mod config;
pub mod coupons;
pub mod error;
pub mod extract;
pub mod goods;
pub mod http;
pub mod idempotency;
pub mod orders;
pub mod pagination;
pub mod platform;
pub mod queue;
pub mod reservations;
pub mod seed;
pub mod server;
pub mod state;
pub mod users;
pub mod wallet;
