//! Filled buffers as `bytes::Bytes` (feature `bytes`): no copy, and the buffer goes back to its
//! pool when the last clone is dropped, on whichever thread, not before.
#![cfg(feature = "bytes")]

use buffer_core::{BufferPool, PoolConfig, Wait};

#[test]
fn the_buffer_returns_when_the_last_clone_drops_not_before() {
    let pool = BufferPool::with_heap_buffers(PoolConfig::new("bytes"), 2, 256).unwrap();
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    frame.as_mut_slice().unwrap()[..100].fill(9);
    frame.set_bytes_used(100).unwrap();
    frame.submit();

    let filled = pool.acquire_filled(Wait::NoWait).unwrap();
    let address = filled.as_slice().unwrap().as_ptr();
    let bytes = filled.into_bytes().unwrap();
    assert_eq!(
        bytes.as_ptr(),
        address,
        "the Bytes reads the pool buffer in place"
    );
    assert_eq!(bytes.len(), 100);
    let clones: Vec<_> = (0..4).map(|_| bytes.clone()).collect();
    drop(bytes);
    let tail = clones[0].slice(90..);
    drop(clones);
    assert_eq!(pool.counts().free, 1, "a slice still holds the buffer");

    let reader = std::thread::spawn(move || tail.iter().map(|&byte| u32::from(byte)).sum::<u32>());
    assert_eq!(reader.join().unwrap(), 90);
    assert_eq!(
        pool.counts().free,
        2,
        "the last clone, dropped on another thread, released it"
    );
    assert_eq!(pool.audit(), Vec::<String>::new());
}
