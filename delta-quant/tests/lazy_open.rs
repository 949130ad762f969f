//! `DeltaFile` keeps compressed payloads in its memory map, not on the heap:
//! opening a file whose compressed tensors total `T` bytes must neither retain
//! nor (at peak) allocate anything close to `T`, and
//! [`DeltaFile::compressed`] decodes the same value on every call.
//!
//! Heap use is measured with a counting global allocator, so this file holds
//! a single test (tests in one binary run on parallel threads and would
//! disturb each other's counts).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::random_matrix;
use delta_quant::{
    parse_method, CompressContext, DeltaFile, DeltaFileHeader, DeltaFileWriter, EntryKind,
};

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live heap bytes now; resets the high-water mark to it.
fn reset_peak() -> usize {
    let now = LIVE.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

#[test]
fn open_keeps_payloads_in_the_map_and_decodes_on_demand() {
    const TENSORS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("delta.safetensors");
    let comp = parse_method("magnitude:density=0.1").unwrap();
    let mut w =
        DeltaFileWriter::create(&path, DeltaFileHeader::new(comp.as_ref(), "sha256:base")).unwrap();
    let mut written = Vec::with_capacity(TENSORS);
    for i in 0..TENSORS {
        let name = format!("model.layers.{i}.mlp.up_proj.weight");
        let d = random_matrix(64, 512, i as u64);
        let c = comp
            .compress_matrix(&d, &CompressContext::new(&name, 7))
            .unwrap();
        w.add_compressed(&name, &c).unwrap();
        written.push((name, c));
    }
    w.finish().unwrap();
    let total: u64 = written.iter().map(|(_, c)| c.storage_bytes()).sum();
    let largest = written
        .iter()
        .map(|(_, c)| c.storage_bytes())
        .max()
        .unwrap();
    // Sanity: the payloads dominate, so keeping them would be visible.
    assert!(total > 40 * largest, "total {total}, largest {largest}");

    let before = reset_peak();
    let f = DeltaFile::open(&path).unwrap();
    let retained = LIVE.load(Ordering::Relaxed).saturating_sub(before) as u64;
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before) as u64;
    // Eager decoding would retain at least `total`; lazy keeps names, shapes
    // and byte ranges. Validation decodes one tensor at a time, plus the
    // parsed JSON header.
    assert!(
        retained < total / 4,
        "open retained {retained} heap bytes for {total} bytes of compressed payloads"
    );
    assert!(
        peak < total / 2,
        "open peaked at {peak} heap bytes for {total} bytes of compressed payloads"
    );

    // On demand: equal to what was written, on every call, one tensor at a
    // time (each value is dropped before the next is decoded).
    let base = reset_peak();
    for (name, c) in &written {
        assert_eq!(&f.compressed(name).unwrap(), c, "{name}");
        assert_eq!(&f.compressed(name).unwrap(), c, "{name} (second call)");
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base) as u64;
    assert!(
        peak < total / 4,
        "fetching tensors one at a time peaked at {peak} heap bytes ({total} in all)"
    );
    assert!(f.entries().iter().all(|e| e.kind == EntryKind::Compressed));
}
