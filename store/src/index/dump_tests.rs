//! The dump's own tests: a round trip is the same index; damage, another version or
//! another collection's dump is rejected with its reason.

use super::*;
use crate::index::{test_points as points, Quantization};

fn header(metric: Metric, hnsw: IndexParams, dim: usize) -> DumpHeader {
    DumpHeader {
        collection: "c".into(),
        incarnation: 7,
        dimension: dim,
        metric,
        hnsw,
        context_version: 0,
        seq: 42,
        shards: Some(vec![1, 3]),
    }
}

/// An index of `data` (ids 100, 101, ...) with a few tombstones.
fn index(data: &[Vec<f32>], metric: Metric, hnsw: IndexParams) -> VectorIndex {
    let index = VectorIndex::new(data[0].len(), metric, hnsw, data.len());
    let items: Vec<(u64, &[f32])> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (100 + i as u64, v.as_slice()))
        .collect();
    index.insert_batch(&items);
    index.remove(&[100, 105, 150]);
    index
}

fn results(index: &VectorIndex, queries: &[Vec<f32>]) -> Vec<Vec<(u64, f32)>> {
    queries.iter().map(|q| index.search(q, 10, 64)).collect()
}

#[test]
fn a_round_trip_gives_the_same_results_and_the_same_graph_after_more_inserts() {
    let cases = [
        (Metric::Cosine, Quantization::Int8),
        (Metric::Euclidean, Quantization::None),
        (Metric::Dot, Quantization::Int8),
    ];
    for (metric, quantization) in cases {
        let hnsw = IndexParams {
            quantization,
            ..IndexParams::default()
        };
        let data = points(2500, 12, 3);
        let original = index(&data, metric, hnsw);
        let h = header(metric, hnsw, 12);
        let bytes = original.to_dump(&h);
        let (read, back) = VectorIndex::from_dump(
            &bytes,
            &DumpHeader {
                seq: 0,
                shards: None,
                ..h.clone()
            },
        )
        .expect("a fresh dump reads back (its shards are not compared)");
        assert_eq!((read.seq, read.shards), (42, Some(vec![1, 3])));
        assert_eq!(back.len(), original.len());
        assert_eq!(back.tombstone_count(), 3);
        assert_eq!(back.is_quantized(), original.is_quantized());
        let queries = points(30, 12, 9);
        assert_eq!(
            results(&back, &queries),
            results(&original, &queries),
            "{metric:?}"
        );
        // The level generator and the quantizer came back too: the same inserts
        // make the same graph.
        let more = points(300, 12, 11);
        for index in [&original, &back] {
            let items: Vec<(u64, &[f32])> = more
                .iter()
                .enumerate()
                .map(|(i, v)| (10_000 + i as u64, v.as_slice()))
                .collect();
            index.insert_batch(&items);
        }
        assert_eq!(results(&back, &queries), results(&original, &queries));
        assert!(back.to_dump(&h) == original.to_dump(&h), "byte for byte");
    }
}

#[test]
fn damage_another_version_or_another_collection_is_rejected_with_its_reason() {
    let hnsw = IndexParams::default();
    let data = points(1200, 6, 5);
    let h = header(Metric::Cosine, hnsw, 6);
    let bytes = index(&data, Metric::Cosine, hnsw).to_dump(&h);
    let read = |b: &[u8]| VectorIndex::from_dump(b, &h).map(|_| ()).unwrap_err();

    for at in [20, bytes.len() / 2, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        assert_eq!(
            read(&flipped),
            Rejected::Corrupt("checksum mismatch".into()),
            "byte {at}"
        );
    }
    for cut in [0, 7, 15, bytes.len() / 3, bytes.len() - 1] {
        assert!(
            matches!(read(&bytes[..cut]), Rejected::Corrupt(_)),
            "cut at {cut}: {:?}",
            read(&bytes[..cut])
        );
    }
    let mut other_version = bytes.clone();
    other_version[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(read(&other_version), Rejected::Version(FORMAT_VERSION + 1));
    let mut not_a_dump = bytes.clone();
    not_a_dump[0] = b'X';
    assert!(matches!(read(&not_a_dump), Rejected::Corrupt(m) if m.contains("magic")));

    for expected in [
        DumpHeader {
            incarnation: 8,
            ..h.clone()
        },
        DumpHeader {
            dimension: 7,
            ..h.clone()
        },
        DumpHeader {
            metric: Metric::Dot,
            ..h.clone()
        },
        DumpHeader {
            context_version: 2,
            ..h.clone()
        },
        DumpHeader {
            hnsw: IndexParams { m: 8, ..hnsw },
            ..h.clone()
        },
    ] {
        let why = VectorIndex::from_dump(&bytes, &expected)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(&why, Rejected::Mismatch(m) if m.contains("in the dump")),
            "{why}"
        );
    }
    // A damaged count inside a file whose checksum was fixed up is still refused,
    // not a panic or a huge allocation.
    let mut forged = bytes.clone();
    let body = forged.len() - 4;
    let header_len = u32::from_le_bytes(forged[12..16].try_into().unwrap()) as usize;
    let node_count = 16 + header_len + 24;
    forged[node_count..node_count + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&forged[..body]);
    forged[body..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(read(&forged), Rejected::Corrupt(_)));
}

#[test]
fn a_dump_is_written_atomically_and_a_missing_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graphs").join("c.graph");
    assert_eq!(read_file(&path).unwrap_err(), Rejected::Missing);
    write_atomically(&path, b"first").unwrap();
    write_atomically(&path, b"second").unwrap();
    assert_eq!(read_file(&path).unwrap(), b"second");
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["c.graph"], "no temporary file left");
}
