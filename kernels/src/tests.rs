//! Every fast path this CPU can run, checked against the scalar reference.
//!
//! These live inside the crate because they call each backend's table
//! directly (`dispatch::available()`), not only the one the dispatcher picks:
//! on an AVX-512 machine the AVX2 kernels are tested too. The public API is
//! tested from outside in `tests/kernels.rs`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dispatch::{available, Kernels, SCALAR};
use crate::scalar;

const LENGTHS: &[usize] = &[
    0, 1, 3, 7, 15, 16, 17, 31, 50, 63, 64, 65, 100, 384, 784, 1536,
];

/// The SIMD tables, i.e. everything but the reference itself.
fn fast_tables() -> Vec<Kernels> {
    available()
        .into_iter()
        .filter(|k| k.name != "scalar")
        .collect()
}

fn random_vec(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
        .collect()
}

/// `|got − want| ≤ 1e-4 · magnitude`, where `magnitude` is the sum of the
/// absolute terms (the scale of the rounding error of any summation order).
fn assert_close(got: f32, want: f32, magnitude: f32, what: &str) {
    let tol = 1e-4 * magnitude + f32::MIN_POSITIVE;
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tolerance {tol})"
    );
}

/// Safe wrappers: every table from `available()` runs on this CPU.
fn dot(k: &Kernels, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `available()` only lists tables whose features were detected.
    unsafe { (k.dot)(a, b) }
}
fn l2(k: &Kernels, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { (k.l2_squared)(a, b) }
}
fn sum_sq(k: &Kernels, a: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { (k.sum_squares)(a) }
}
fn cosine(k: &Kernels, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as above.
    let (ab, aa, bb) = unsafe { (k.cosine_parts)(a, b) };
    scalar::finish_cosine(ab, aa, bb, a, b)
}
fn cos_parts(k: &Kernels, a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    // SAFETY: as above.
    unsafe { (k.cosine_parts)(a, b) }
}
fn dot_i8(k: &Kernels, a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: as above.
    unsafe { (k.dot_i8)(a, b) }
}

#[test]
fn this_cpu_has_a_fast_path_where_expected() {
    let names: Vec<_> = available().iter().map(|k| k.name).collect();
    assert_eq!(names[0], "scalar");
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(names.contains(&"avx2+fma"), "{names:?}");
        }
        if is_x86_feature_detected!("avx512f") {
            assert_eq!(*names.last().unwrap(), "avx512");
        }
    }
    eprintln!("backends tested here: {names:?}");
}

#[test]
fn f32_kernels_match_reference() {
    let mut rng = StdRng::seed_from_u64(7);
    for k in fast_tables() {
        for &len in LENGTHS {
            for scale in [1e-3f32, 1.0, 1e3] {
                // One spare element in front: slices start unaligned.
                let a = random_vec(&mut rng, len + 1, scale);
                let b = random_vec(&mut rng, len + 1, scale);
                let (a, b) = (&a[1..], &b[1..]);
                let what = format!("{} len {len} scale {scale}", k.name);

                let mag_ab: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
                let mag_aa = scalar::sum_squares(a);
                let mag_bb = scalar::sum_squares(b);
                assert_close(
                    dot(&k, a, b),
                    scalar::dot(a, b),
                    mag_ab,
                    &format!("dot {what}"),
                );
                assert_close(
                    l2(&k, a, b),
                    scalar::l2_squared(a, b),
                    scalar::l2_squared(a, b),
                    &format!("l2 {what}"),
                );
                assert_close(sum_sq(&k, a), mag_aa, mag_aa, &format!("sum_sq {what}"));
                let (ab, aa, bb) = cos_parts(&k, a, b);
                let (rab, raa, rbb) = scalar::cosine_parts(a, b);
                assert_close(ab, rab, mag_ab, &format!("cos ab {what}"));
                assert_close(aa, raa, mag_aa, &format!("cos aa {what}"));
                assert_close(bb, rbb, mag_bb, &format!("cos bb {what}"));
                assert_close(
                    cosine(&k, a, b),
                    scalar::cosine_similarity(a, b),
                    1.0,
                    &what,
                );
            }
        }
    }
}

#[test]
fn every_lane_and_tail_position_is_used() {
    // A single non-zero element at each position catches a lane or a tail
    // element that a kernel skips or counts twice.
    for k in fast_tables() {
        for &len in LENGTHS.iter().filter(|&&l| l > 0 && l <= 100) {
            for pos in 0..len {
                let mut a = vec![0.0f32; len];
                let b = vec![2.0f32; len];
                a[pos] = 3.0;
                let what = format!("{} len {len} pos {pos}", k.name);
                assert_eq!(dot(&k, &a, &b), 6.0, "dot {what}");
                assert_eq!(sum_sq(&k, &a), 9.0, "sum_sq {what}");
                let want_l2 = 1.0 + 4.0 * (len - 1) as f32;
                assert_eq!(l2(&k, &a, &b), want_l2, "l2 {what}");
                assert_eq!(
                    cos_parts(&k, &a, &b),
                    (6.0, 9.0, 4.0 * len as f32),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn nan_propagates_like_the_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    for k in available() {
        for &len in LENGTHS.iter().filter(|&&l| l > 0) {
            // First element, a middle one, and the last (always in a tail
            // or the final block).
            for pos in [0, len / 2, len - 1] {
                let mut a = random_vec(&mut rng, len, 1.0);
                let b = random_vec(&mut rng, len, 1.0);
                a[pos] = f32::NAN;
                let what = format!("{} len {len} pos {pos}", k.name);
                assert!(dot(&k, &a, &b).is_nan(), "dot {what}");
                assert!(dot(&k, &b, &a).is_nan(), "dot swapped {what}");
                assert!(l2(&k, &a, &b).is_nan(), "l2 {what}");
                assert!(sum_sq(&k, &a).is_nan(), "sum_sq {what}");
                assert!(cosine(&k, &a, &b).is_nan(), "cosine {what}");
                assert!(cosine(&k, &b, &a).is_nan(), "cosine swapped {what}");
                // NaN against a zero vector is still NaN, not the zero rule.
                assert!(
                    cosine(&k, &a, &vec![0.0; len]).is_nan(),
                    "cosine zero {what}"
                );
            }
        }
    }
}

#[test]
fn zero_vectors() {
    for k in available() {
        for &len in LENGTHS {
            let z = vec![0.0f32; len];
            let b: Vec<f32> = (0..len).map(|i| i as f32 - 10.0).collect();
            let what = format!("{} len {len}", k.name);
            assert_eq!(dot(&k, &z, &b), 0.0, "dot {what}");
            assert_eq!(sum_sq(&k, &z), 0.0, "sum_sq {what}");
            // Same table, same summation order: bit-identical.
            assert_eq!(l2(&k, &z, &b), sum_sq(&k, &b), "l2 {what}");
            assert_eq!(cosine(&k, &z, &b), 0.0, "cosine {what}");
            assert_eq!(cosine(&k, &z, &z), 0.0, "cosine both zero {what}");
        }
    }
}

#[test]
fn extreme_magnitudes() {
    let mut rng = StdRng::seed_from_u64(13);
    for k in available() {
        for &len in LENGTHS.iter().filter(|&&l| l > 0) {
            let what = format!("{} len {len}", k.name);
            let a = random_vec(&mut rng, len, 1.0);
            let b = random_vec(&mut rng, len, 1.0);
            let want = scalar::cosine_similarity(&a, &b);
            for scale in [1e30f32, 1e-30, 1e-40] {
                // Squares overflow (1e60) or underflow (1e-60): the f32 sums
                // are useless, the cosine must still be right.
                let sa: Vec<f32> = a.iter().map(|x| x * scale).collect();
                let sb: Vec<f32> = b.iter().map(|x| x * scale).collect();
                let got = cosine(&k, &sa, &sb);
                // 1e-40 is subnormal: scaling itself rounds the inputs.
                let tol = if scale < 1e-38 { 1e-2 } else { 1e-4 };
                assert!(
                    (got - want).abs() <= tol,
                    "cosine x{scale} {what}: {got} vs {want}"
                );
            }
            // Overflow of the raw sums agrees with the reference: +inf.
            let huge = vec![1e30f32; len];
            assert_eq!(dot(&k, &huge, &huge), f32::INFINITY, "dot {what}");
            assert_eq!(sum_sq(&k, &huge), f32::INFINITY, "sum_sq {what}");
            let neg: Vec<f32> = huge.iter().map(|x| -x).collect();
            assert_eq!(dot(&k, &huge, &neg), f32::NEG_INFINITY, "dot neg {what}");
            assert_eq!(l2(&k, &huge, &neg), f32::INFINITY, "l2 {what}");
            assert_eq!(cosine(&k, &huge, &neg), -1.0, "cosine {what}");
            // Infinity in an input: NaN cosine, like NaN.
            let mut inf = a.clone();
            inf[len - 1] = f32::INFINITY;
            assert!(cosine(&k, &inf, &b).is_nan(), "cosine inf {what}");
        }
    }
}

#[test]
fn mismatched_lengths_use_the_shorter() {
    // The reference debug-asserts equal lengths; the SIMD kernels only clamp.
    let tables = if cfg!(debug_assertions) {
        fast_tables()
    } else {
        available()
    };
    let mut rng = StdRng::seed_from_u64(17);
    for k in tables {
        for (la, lb) in [(10, 7), (7, 10), (64, 63), (100, 1), (0, 5), (17, 16)] {
            let a = random_vec(&mut rng, la, 1.0);
            let b = random_vec(&mut rng, lb, 1.0);
            let n = la.min(lb);
            let (sa, sb) = (&a[..n], &b[..n]);
            let what = format!("{} {la}x{lb}", k.name);
            assert_close(dot(&k, &a, &b), scalar::dot(sa, sb), n as f32, &what);
            assert_close(
                l2(&k, &a, &b),
                scalar::l2_squared(sa, sb),
                4.0 * n as f32,
                &what,
            );
            let (ab, aa, bb) = cos_parts(&k, &a, &b);
            assert_close(ab, scalar::dot(sa, sb), n as f32, &what);
            assert_close(aa, scalar::sum_squares(sa), n as f32, &what);
            assert_close(bb, scalar::sum_squares(sb), n as f32, &what);
            let ca: Vec<i8> = a.iter().map(|x| (x * 127.0) as i8).collect();
            let cb: Vec<i8> = b.iter().map(|x| (x * 127.0) as i8).collect();
            assert_eq!(
                dot_i8(&k, &ca, &cb),
                scalar::dot_i8(&ca[..n], &cb[..n]),
                "{what}"
            );
        }
    }
}

#[test]
fn dot_i8_is_exact() {
    let mut rng = StdRng::seed_from_u64(19);
    let extra = [127, 128, 129, 191, 255, 256, 257, 4096];
    for k in fast_tables() {
        for &len in LENGTHS.iter().chain(&extra) {
            let a: Vec<i8> = (0..len + 1).map(|_| rng.gen()).collect();
            let b: Vec<i8> = (0..len + 1).map(|_| rng.gen()).collect();
            let (a, b) = (&a[1..], &b[1..]);
            let what = format!("{} int8 {} len {len}", k.name, k.int8_name);
            assert_eq!(dot_i8(&k, a, b), scalar::dot_i8(a, b), "{what}");
            // The extremes: -128·-128 is the one product that does not fit
            // i8·i8 → i16 pair sums naively, and -128·127 the most negative.
            let min = vec![i8::MIN; len];
            let max = vec![i8::MAX; len];
            assert_eq!(dot_i8(&k, &min, &min), 16384 * len as i32, "{what} min·min");
            assert_eq!(
                dot_i8(&k, &min, &max),
                -16256 * len as i32,
                "{what} min·max"
            );
            assert_eq!(dot_i8(&k, &max, &max), 16129 * len as i32, "{what} max·max");
        }
    }
}

#[test]
fn dot_i8_wraps_like_the_reference() {
    // 200_000 · 16384 overflows i32: every backend must wrap identically.
    let len = 200_000;
    let a = vec![i8::MIN; len];
    let want = scalar::dot_i8(&a, &a);
    assert_eq!(want, (16384i64 * len as i64) as i32);
    for k in fast_tables() {
        assert_eq!(dot_i8(&k, &a, &a), want, "{} int8 {}", k.name, k.int8_name);
    }
}

#[test]
fn scalar_table_is_the_reference() {
    let a = [1.0f32, -2.0, 3.0];
    let b = [0.5f32, 4.0, -1.0];
    assert_eq!(dot(&SCALAR, &a, &b), scalar::dot(&a, &b));
    assert_eq!(l2(&SCALAR, &a, &b), scalar::l2_squared(&a, &b));
}
