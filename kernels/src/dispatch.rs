//! Picks the best kernels for this CPU once, and remembers them.
//!
//! A [`Kernels`] table holds one function pointer per kernel. [`kernels`]
//! builds the table on first use (`is_x86_feature_detected!` on x86-64, the
//! NEON baseline on aarch64, the scalar reference elsewhere) and caches it in
//! a `OnceLock`; every later call is an atomic load plus one indirect call.

use std::sync::OnceLock;

use crate::scalar;

/// `(a, b) -> f32` kernel. `unsafe` because the SIMD entries may only run on
/// CPUs with their features; a table from [`kernels`] or [`available`] only
/// holds entries this CPU supports.
pub(crate) type PairFn = unsafe fn(&[f32], &[f32]) -> f32;
/// `a -> f32` kernel (sum of squares).
pub(crate) type UnaryFn = unsafe fn(&[f32]) -> f32;
/// `(a, b) -> (Σab, Σa², Σb²)` kernel behind cosine.
pub(crate) type CosineFn = unsafe fn(&[f32], &[f32]) -> (f32, f32, f32);
/// `(a, b) -> Σab` over int8 codes.
pub(crate) type DotI8Fn = unsafe fn(&[i8], &[i8]) -> i32;

/// One backend's kernels. The f32 kernels come from one instruction set; the
/// int8 kernel is chosen separately, since VNNI is not implied by AVX-512F.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    /// Backend of the f32 kernels, as reported by [`crate::backend`].
    pub name: &'static str,
    /// Backend of the int8 kernel.
    pub int8_name: &'static str,
    pub dot: PairFn,
    pub l2_squared: PairFn,
    pub sum_squares: UnaryFn,
    pub cosine_parts: CosineFn,
    pub dot_i8: DotI8Fn,
}

/// The portable reference, valid on every CPU.
pub(crate) const SCALAR: Kernels = Kernels {
    name: "scalar",
    int8_name: "scalar",
    dot: scalar::dot,
    l2_squared: scalar::l2_squared,
    sum_squares: scalar::sum_squares,
    cosine_parts: scalar::cosine_parts,
    dot_i8: scalar::dot_i8,
};

/// Environment variable that forces a slower backend by name (`scalar`,
/// `avx2+fma`, ...), to rule out a SIMD bug or to benchmark one backend
/// against another. Names this CPU cannot run are ignored.
pub(crate) const OVERRIDE_ENV: &str = "ENGRAM_KERNELS";

/// The table for this CPU, detected on first call and cached for the life of
/// the process.
#[inline]
pub(crate) fn kernels() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(select)
}

/// The fastest table, unless [`OVERRIDE_ENV`] names another available one.
#[cold]
fn select() -> Kernels {
    let tables = available();
    let forced = std::env::var(OVERRIDE_ENV).ok();
    let forced = forced.and_then(|name| tables.iter().find(|k| k.name == name.trim()));
    *forced.or(tables.last()).unwrap_or(&SCALAR)
}

/// Every table this CPU can run, slowest first (the scalar reference always
/// first, the one [`kernels`] picks last). Tests use it to check each fast
/// path against the reference, not just the one that wins.
pub(crate) fn available() -> Vec<Kernels> {
    let mut tables = vec![SCALAR];
    add_native(&mut tables);
    tables
}

#[cfg(target_arch = "x86_64")]
fn add_native(tables: &mut Vec<Kernels>) {
    use crate::{x86_avx2, x86_avx512};
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return;
    }
    let avx2 = Kernels {
        name: "avx2+fma",
        int8_name: "avx2",
        dot: x86_avx2::dot,
        l2_squared: x86_avx2::l2_squared,
        sum_squares: x86_avx2::sum_squares,
        cosine_parts: x86_avx2::cosine_parts,
        dot_i8: x86_avx2::dot_i8,
    };
    tables.push(avx2);
    if !is_x86_feature_detected!("avx512f") {
        return;
    }
    let vnni = is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni");
    tables.push(Kernels {
        name: "avx512",
        int8_name: if vnni { "avx512vnni" } else { avx2.int8_name },
        dot: x86_avx512::dot,
        l2_squared: x86_avx512::l2_squared,
        sum_squares: x86_avx512::sum_squares,
        cosine_parts: x86_avx512::cosine_parts,
        dot_i8: if vnni {
            x86_avx512::dot_i8_vnni
        } else {
            avx2.dot_i8
        },
    });
}

#[cfg(target_arch = "aarch64")]
fn add_native(tables: &mut Vec<Kernels>) {
    use crate::neon;
    tables.push(Kernels {
        name: "neon",
        int8_name: "neon",
        dot: neon::dot,
        l2_squared: neon::l2_squared,
        sum_squares: neon::sum_squares,
        cosine_parts: neon::cosine_parts,
        dot_i8: neon::dot_i8,
    });
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn add_native(_tables: &mut Vec<Kernels>) {}
