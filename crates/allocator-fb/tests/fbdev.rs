//! The framebuffer backend against a real fbdev driver (in `cargo xtask vm-test`: bochs-drm's
//! fbdev emulation, over-allocated to two pages). Skips where `/dev/fb0` does not exist (and the
//! two-page check outside the VM); fails instead with `BUFPOOL_REQUIRE_DISPLAY` set, as it is in
//! the VM.

mod common;

use allocator_base::PoolAllocator;
use allocator_fb::{FbAllocator, FbBackend, FbDevice, PresentError, Presenter};
use buffer_core::{MemoryKind, Ownership, Wait};

/// Whether `/dev/fb0` exists. Also the conformance suite's `if`, so with
/// `BUFPOOL_REQUIRE_DISPLAY` set a missing device fails every test here instead of skipping it.
fn available() -> bool {
    common::present(common::FB)
}

fn carved() -> FbBackend {
    FbBackend::carved(FbDevice::open(common::FB).unwrap(), 16384).unwrap()
}

allocator_base::conformance_tests!(carved(), if available());

/// The line the display is panned to, as sysfs reports it ("x,y").
fn panned_line() -> u32 {
    let pan = std::fs::read_to_string("/sys/class/graphics/fb0/pan").unwrap();
    pan.trim().split(',').nth(1).unwrap().parse().unwrap()
}

#[test]
fn pages_are_buffers_and_presenting_pans_to_them() {
    if !available() {
        return;
    }
    let backend = FbBackend::pages(FbDevice::open(common::FB).unwrap()).unwrap();
    let info = backend.info().clone();
    println!("{info:?}");
    assert!(info.pages() >= 1);
    assert_eq!(backend.buffer_count(), info.pages() as usize);
    assert_eq!(backend.buffer_len(), info.page_len());
    let allocator = FbAllocator::new(backend);
    let pages = info.pages();
    let id = allocator
        .allocate_pool_with_buffers(pages, info.page_len(), "fb-pages", "display")
        .unwrap();
    let err = allocator
        .inject_buffer(id, info.page_len(), buffer_core::Queue::Free)
        .unwrap_err();
    assert!(err.to_string().contains("no free range"), "{err}");
    let pool = allocator.pool(id).unwrap();
    let mut presenter = Presenter::new(allocator.backend().scan_out());
    for round in 0..2 * pages {
        let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
        let buffer = frame.buffer();
        assert_eq!(
            (buffer.kind, buffer.ownership),
            (MemoryKind::ScanOut, Ownership::External)
        );
        let page = allocator.backend().scan_out().page_of(&buffer).unwrap();
        if info.phys_start != 0 {
            assert_eq!(
                buffer.phys_addr,
                Some(info.phys_start + u64::from(page) * info.page_len() as u64)
            );
        }
        frame.as_mut_slice().unwrap().fill(round as u8);
        frame.submit();
        presenter.show_next(&pool, Wait::NoWait).unwrap();
        assert_eq!(panned_line(), page * info.height, "round {round}");
        assert_eq!(pool.counts().free, pages - 1, "only the shown page is held");
    }
    presenter.stop();
    assert_eq!(pool.counts().free, pages);
}

#[test]
fn the_double_buffered_device_has_two_pages() {
    if !available() {
        return;
    }
    let info = FbDevice::open(common::FB).unwrap().info().unwrap();
    if std::env::var_os("BUFPOOL_SCREENDUMP").is_none() {
        common::skip(format_args!(
            "only the VM sets drm_fbdev_overalloc=200; this device has {} page(s)",
            info.pages()
        ));
        return;
    }
    assert_eq!(info.virtual_height, 2 * info.height, "{info:?}");
    assert_eq!(info.pages(), 2);
}

#[test]
fn pieces_that_are_not_pages_cannot_be_presented() {
    if !available() {
        return;
    }
    let backend = carved();
    let allocator = FbAllocator::new(backend);
    let id = allocator
        .allocate_pool_with_buffers(2, 100, "fb-pieces", "display")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let mut presenter = Presenter::new(allocator.backend().scan_out());
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    let mut refused = 0;
    for _ in 0..2 {
        match presenter.show_next(&pool, Wait::NoWait) {
            Ok(_) => {} // the piece at offset 0 is page 0
            Err(allocator_fb::ShowError::Present(PresentError::NotAPage { page_len, .. })) => {
                assert_eq!(page_len, allocator.backend().info().page_len());
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(refused, 1);
    drop(presenter);
    assert_eq!(
        pool.counts().free,
        2,
        "refused frames went back to the pool"
    );
}

#[test]
fn heap_buffers_are_not_framebuffer_memory() {
    if !available() {
        return;
    }
    let backend = FbBackend::pages(FbDevice::open(common::FB).unwrap()).unwrap();
    let heap =
        buffer_core::BufferPool::with_heap_buffers(buffer_core::PoolConfig::new("heap"), 1, 64)
            .unwrap();
    heap.acquire_free(Wait::NoWait).unwrap().submit();
    let mut presenter = Presenter::new(backend.scan_out());
    let err = presenter.show_next(&heap, Wait::NoWait).unwrap_err();
    assert!(
        err.to_string().contains("not memory of this display"),
        "{err}"
    );
}
