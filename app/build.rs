// `sqlx::migrate!` embeds app/migrations at compile time, but cargo does not know that the
// crate reads that folder: a new migration alone would leave the binary without it. (sqlx's
// `sqlx migrate build-script` writes this same line.)
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
