//! Tests across real `floodgate-app serve` processes: the replica set behind nginx, a small
//! shop of users, goods and wallets with its invariants, and a waiting-room crowd.

pub mod replicas;
pub mod shop;
pub mod waiting_room;
