//! Think time, in Locust's `between(a, b)` shape and k6's `sleep`.

use std::time::Duration;

use rand::Rng;

/// A uniform random pause between `min` and `max` seconds (Locust's `wait_time = between`).
pub fn between_secs<R: Rng>(rng: &mut R, min: f64, max: f64) -> Duration {
    if max <= min {
        return Duration::from_secs_f64(min.max(0.0));
    }
    Duration::from_secs_f64(rng.random_range(min..max).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn stays_in_range() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = between_secs(&mut rng, 1.0, 5.0).as_secs_f64();
            assert!((1.0..5.0).contains(&d));
        }
        assert_eq!(between_secs(&mut rng, 2.0, 2.0), Duration::from_secs(2));
    }
}
