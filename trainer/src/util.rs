//! Small helpers shared by checkpoints, training and the outputs. The file helpers
//! (atomic writes, JSON) are the generator's: its adapter registry needs them for
//! serving, and one copy serves both crates.

pub use engram_generator::adapters::files::{read_json, write_atomic, write_json};

/// splitmix64: a seeded, well-mixed hash (data order and dropout seeds per step).
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
