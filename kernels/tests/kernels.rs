//! The public API as the index uses it: the dispatched kernels against the
//! reference, the documented edge cases, and the int8 quantizer. (Each SIMD
//! backend is checked separately, lane by lane, by the unit tests in
//! `src/tests.rs`.)

use engram_kernels::{self as kernels, scalar, KernelError, ScalarQuantizer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LENGTHS: &[usize] = &[
    0, 1, 3, 7, 15, 16, 17, 31, 50, 63, 64, 65, 100, 384, 784, 1536,
];

fn random_vec(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn assert_close(got: f32, want: f32, magnitude: f32, what: &str) {
    let tol = 1e-4 * magnitude + f32::MIN_POSITIVE;
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
}

#[test]
fn backend_is_the_best_this_cpu_has() {
    let name = kernels::backend();
    eprintln!("dispatched backend: {name}");
    if std::env::var("ENGRAM_KERNELS").is_ok_and(|forced| forced == name) {
        return; // Forced on purpose; the other tests still run against it.
    }
    #[cfg(target_arch = "x86_64")]
    {
        let want = if is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "scalar"
        };
        assert_eq!(name, want);
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(name, "neon");
}

#[test]
fn dispatched_matches_reference() {
    let mut rng = StdRng::seed_from_u64(1);
    for &len in LENGTHS {
        let a = random_vec(&mut rng, len);
        let b = random_vec(&mut rng, len);
        let mag = len as f32;
        assert_close(kernels::dot(&a, &b), scalar::dot(&a, &b), mag, "dot");
        assert_close(
            kernels::l2_squared(&a, &b),
            scalar::l2_squared(&a, &b),
            4.0 * mag,
            "l2",
        );
        assert_close(
            kernels::cosine_similarity(&a, &b),
            scalar::cosine_similarity(&a, &b),
            1.0,
            "cosine",
        );
        assert_close(
            kernels::norm(&a),
            scalar::norm(&a),
            scalar::norm(&a),
            "norm",
        );
        let codes: Vec<i8> = (0..len).map(|_| rng.gen()).collect();
        let other: Vec<i8> = (0..len).map(|_| rng.gen()).collect();
        assert_eq!(
            kernels::dot_i8(&codes, &other),
            scalar::dot_i8(&codes, &other)
        );
    }
}

#[test]
fn resolved_pair_kernels_are_the_dispatched_ones() {
    let mut rng = StdRng::seed_from_u64(2);
    let (dot, l2) = (
        kernels::PairKernel::dot(),
        kernels::PairKernel::l2_squared(),
    );
    for &len in LENGTHS {
        let a = random_vec(&mut rng, len);
        let b = random_vec(&mut rng, len);
        assert_eq!(dot.call(&a, &b).to_bits(), kernels::dot(&a, &b).to_bits());
        assert_eq!(
            l2.call(&a, &b).to_bits(),
            kernels::l2_squared(&a, &b).to_bits()
        );
    }
}

#[test]
fn cosine_edge_cases() {
    let a = [1.0f32, 2.0, 3.0];
    assert_close(kernels::cosine_similarity(&a, &a), 1.0, 1.0, "self");
    let neg: Vec<f32> = a.iter().map(|x| -2.0 * x).collect();
    assert_close(kernels::cosine_similarity(&a, &neg), -1.0, 1.0, "opposite");
    assert_eq!(kernels::cosine_similarity(&a, &[0.0; 3]), 0.0);
    assert_eq!(kernels::cosine_similarity(&[0.0; 3], &[0.0; 3]), 0.0);
    assert_eq!(kernels::cosine_similarity(&[], &[]), 0.0);
    assert!(kernels::cosine_similarity(&[1.0, f32::NAN, 0.0], &a).is_nan());
    assert!(kernels::cosine_similarity(&[1.0, f32::INFINITY, 0.0], &a).is_nan());
    // Never outside [-1, 1], even with rounding.
    let v = vec![0.1f32; 1536];
    let c = kernels::cosine_similarity(&v, &v);
    assert!((-1.0..=1.0).contains(&c), "{c}");
}

#[test]
fn norm_and_normalize() {
    let mut v = vec![3.0f32, 4.0];
    assert_eq!(kernels::norm(&v), 5.0);
    assert!(kernels::normalize(&mut v));
    assert_eq!(v, [0.6, 0.8]);

    let mut rng = StdRng::seed_from_u64(2);
    for &len in LENGTHS.iter().filter(|&&l| l > 0) {
        for scale in [1.0f32, 1e30, 1e-30, 1e-40] {
            let mut v: Vec<f32> = random_vec(&mut rng, len)
                .iter()
                .map(|x| x * scale)
                .collect();
            if v.iter().all(|&x| x == 0.0) {
                continue;
            }
            assert!(kernels::normalize(&mut v), "len {len} scale {scale}");
            assert_close(
                kernels::norm(&v),
                1.0,
                1.0,
                &format!("len {len} scale {scale}"),
            );
        }
    }
    // Huge components: the norm itself is finite and exact.
    assert_eq!(kernels::norm(&[3e30, 4e30]), 5e30);

    // No direction: unchanged, false.
    for bad in [
        vec![0.0f32; 5],
        vec![1.0, f32::NAN],
        vec![f32::INFINITY, 1.0],
        vec![],
    ] {
        let mut v = bad.clone();
        assert!(!kernels::normalize(&mut v), "{bad:?}");
        assert_eq!(format!("{v:?}"), format!("{bad:?}"));
        assert!(!scalar::normalize(&mut v), "{bad:?}");
    }
    assert!(kernels::norm(&[1.0, f32::NAN]).is_nan());
}

#[cfg(not(debug_assertions))]
#[test]
fn mismatched_lengths_use_the_shorter_in_release() {
    let a = [1.0f32; 100];
    let b = [2.0f32; 37];
    assert_eq!(kernels::dot(&a, &b), 74.0);
    assert_eq!(kernels::l2_squared(&b, &a), 37.0);
    assert_eq!(kernels::dot_i8(&[3; 70], &[-2; 65]), -390);
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "length mismatch")]
fn mismatched_lengths_panic_in_debug() {
    kernels::dot(&[1.0; 4], &[1.0; 3]);
}

fn gaussian_vecs(rng: &mut StdRng, count: usize, dim: usize) -> Vec<Vec<f32>> {
    // Sum of uniforms: roughly normal, like embedding components.
    (0..count)
        .map(|_| {
            (0..dim)
                .map(|_| (0..4).map(|_| rng.gen_range(-0.5f32..0.5)).sum::<f32>() * 0.1 + 0.02)
                .collect()
        })
        .collect()
}

#[test]
fn quantizer_round_trip_is_within_half_a_step() {
    let mut rng = StdRng::seed_from_u64(3);
    let vecs = gaussian_vecs(&mut rng, 200, 384);
    let q = ScalarQuantizer::train(vecs.iter().map(Vec::as_slice), 0.99).unwrap();
    assert!(q.min() < 0.0 && q.max() > 0.0 && q.scale() > 0.0, "{q:?}");
    for v in &vecs[..20] {
        let back = q.dequantize(&q.quantize(v));
        for (&x, &y) in v.iter().zip(&back) {
            let clipped = x.clamp(q.min(), q.max());
            assert!((clipped - y).abs() <= q.scale() * 0.5001, "{x} -> {y}");
        }
    }
    // Clipping: outliers land on the end codes.
    assert_eq!(q.quantize(&[-1e9, 1e9, f32::NAN]), [-128, 127, -128]);
}

#[test]
fn quantized_dot_approximates_f32_dot() {
    let mut rng = StdRng::seed_from_u64(4);
    for dim in [50, 384, 1536] {
        let vecs = gaussian_vecs(&mut rng, 100, dim);
        // 1.0: no clipping, so every component is within half a step and the
        // error has a hard bound. 0.99: a few clipped outliers, no hard bound.
        for quantile in [1.0, 0.99] {
            let q = ScalarQuantizer::train(vecs.iter().map(Vec::as_slice), quantile).unwrap();
            let mut total_err = 0.0f32;
            for i in 0..20 {
                let (a, b) = (&vecs[i], &vecs[99 - i]);
                let (ca, cb) = (q.quantize(a), q.quantize(b));
                let approx = q.dot(&ca, q.correction(&ca), &cb, q.correction(&cb));
                let exact = kernels::dot(a, b);
                total_err += (approx - exact).abs();
                // The correction formula is exact for the decoded vectors.
                let decoded = scalar::dot(&q.dequantize(&ca), &q.dequantize(&cb));
                assert_close(approx, decoded, 1.0, "decoded dot");
                if quantile == 1.0 {
                    // |Σ(x+e)(y+f) − Σxy| ≤ h(|x|₁ + |y|₁) + n·h², h = scale/2.
                    let l1 = |v: &[f32]| v.iter().map(|x| x.abs()).sum::<f32>();
                    let h = q.scale() / 2.0;
                    let bound = h * (l1(a) + l1(b)) + dim as f32 * h * h;
                    let err = (approx - exact).abs();
                    assert!(
                        err <= bound * 1.001,
                        "dim {dim}: error {err} > bound {bound}"
                    );
                }
            }
            // Typical error: a small fraction of the typical |dot| (≈ dim·4e-4).
            let mean_err = total_err / 20.0;
            assert!(
                mean_err < dim as f32 * 4e-5,
                "dim {dim} q {quantile}: mean error {mean_err}"
            );
        }
    }
}

#[test]
fn quantizer_rejects_bad_input() {
    assert_eq!(
        ScalarQuantizer::train(std::iter::empty(), 0.99),
        Err(KernelError::EmptyTraining)
    );
    let nan_only: &[f32] = &[f32::NAN, f32::INFINITY];
    assert_eq!(
        ScalarQuantizer::train([nan_only], 0.99),
        Err(KernelError::EmptyTraining)
    );
    let one: &[f32] = &[1.0];
    for q in [0.0, -0.5, 1.5, f32::NAN] {
        assert!(matches!(
            ScalarQuantizer::train([one], q),
            Err(KernelError::InvalidQuantile(_))
        ));
    }
    for (lo, hi) in [
        (1.0, 0.0),
        (f32::NAN, 1.0),
        (0.0, f32::INFINITY),
        (-3e38, 3e38),
    ] {
        assert!(matches!(
            ScalarQuantizer::new(lo, hi),
            Err(KernelError::InvalidRange { .. })
        ));
    }
}

#[test]
fn quantizer_handles_constant_data_and_full_quantile() {
    let constant: &[f32] = &[0.5; 64];
    let q = ScalarQuantizer::train([constant], 0.99).unwrap();
    assert_eq!(q.min(), 0.5);
    assert_eq!(q.dequantize(&q.quantize(constant)), constant);

    let ramp: Vec<f32> = (0..=1000).map(|i| i as f32).collect();
    let full = ScalarQuantizer::train([ramp.as_slice()], 1.0).unwrap();
    assert_eq!(full.min(), 0.0);
    assert_close(full.max(), 1000.0, 1000.0, "full max");
    let clipped = ScalarQuantizer::train([ramp.as_slice()], 0.9).unwrap();
    assert_eq!(clipped.min(), 50.0);
    assert_close(clipped.max(), 950.0, 950.0, "clipped max");
}

#[test]
fn fitted_range_has_the_least_error_of_the_candidates() {
    let error = |q: &ScalarQuantizer, v: &[f32]| -> f64 {
        let back = q.dequantize(&q.quantize(v));
        v.iter()
            .zip(&back)
            .map(|(&x, &y)| f64::from(x - y).powi(2))
            .sum()
    };
    let mut rng = StdRng::seed_from_u64(8);
    // Light tails: clipping a little is best; heavy tails (1% of components 20x
    // larger, as GloVe's few big ones): keeping the whole range is.
    let light: Vec<f32> = gaussian_vecs(&mut rng, 50, 100).concat();
    let mut heavy = light.clone();
    for x in heavy.iter_mut().step_by(100) {
        *x *= 20.0;
    }
    for (name, data) in [("light", &light), ("heavy", &heavy)] {
        let fitted = ScalarQuantizer::fit([data.as_slice()]).unwrap();
        let e = error(&fitted, data);
        for quantile in [0.99, 0.999, 1.0] {
            let q = ScalarQuantizer::train([data.as_slice()], quantile).unwrap();
            assert!(
                e <= error(&q, data) * 1.000_001,
                "{name}: fit {e} vs {quantile}"
            );
        }
    }
    let heavy_fit = ScalarQuantizer::fit([heavy.as_slice()]).unwrap();
    let clipped = ScalarQuantizer::train([heavy.as_slice()], 0.99).unwrap();
    assert!(error(&heavy_fit, &heavy) < 0.5 * error(&clipped, &heavy));
    assert!(matches!(
        ScalarQuantizer::fit([[f32::NAN].as_slice()]),
        Err(KernelError::EmptyTraining)
    ));
}

#[path = "kernels/exact.rs"]
mod exact;
