//! The DRM dumb-buffer backend against a real KMS driver (in `cargo xtask vm-test`: bochs-drm):
//! the conformance suite, scan-out with flips checked on the emulated screen, PRIME export, and
//! the errors a busy or unsuitable display gives. Skips where `/dev/dri/card0` does not exist
//! (and the PRIME test where no vgem card is loaded); fails instead with
//! `BUFPOOL_REQUIRE_DISPLAY` set, as it is in the VM.

mod common;

use std::os::fd::AsFd;

use allocator_base::PoolAllocator;
use allocator_fb::{
    DisplayError, DrmCard, DrmScanOut, DumbAllocator, DumbBackend, ExportError, PresentError,
    Presenter, ScanOutFormat, ShowError,
};
use buffer_core::{MemoryKind, Wait};
use drm::control::Device as _;

/// Whether `/dev/dri/card0` exists. Also the conformance suite's `if`, so with
/// `BUFPOOL_REQUIRE_DISPLAY` set a missing device fails every test here instead of skipping it.
fn available() -> bool {
    common::present(common::CARD)
}

fn card() -> DrmCard {
    DrmCard::open(common::CARD).unwrap()
}

allocator_base::conformance_tests!(
    DumbBackend::new(card(), 64, ScanOutFormat::Xrgb8888).unwrap(),
    if available()
);

/// An allocator of 64-pixel-wide XRGB8888 dumb buffers on `card`.
fn narrow(card: DrmCard) -> DumbAllocator {
    DumbAllocator::new(DumbBackend::new(card, 64, ScanOutFormat::Xrgb8888).unwrap())
}

/// A pool of one buffer of `rows` rows.
fn one_frame_pool(allocator: &DumbAllocator, rows: u32, name: &str) -> buffer_core::BufferPool {
    let size = allocator.backend().frame_size(rows);
    let id = allocator
        .allocate_pool_with_buffers(1, size, name, "display")
        .unwrap();
    allocator.pool(id).unwrap()
}

/// A dumb allocator for frames of the display's mode, with its scan-out.
fn display(buffers: u32) -> (DumbAllocator, DrmScanOut, buffer_core::PoolId) {
    let (width, height) = DrmScanOut::preferred_mode(&card()).unwrap();
    let allocator =
        DumbAllocator::new(DumbBackend::new(card(), width, ScanOutFormat::Xrgb8888).unwrap());
    let scan_out = DrmScanOut::new(allocator.backend()).unwrap();
    let size = allocator.backend().frame_size(height);
    let id = allocator
        .allocate_pool_with_buffers(buffers, size, "drm-frames", "display")
        .unwrap();
    (allocator, scan_out, id)
}

#[test]
fn dumb_buffers_have_the_drivers_pitch() {
    if !available() {
        return;
    }
    println!("driver: {}", card().driver_name().unwrap());
    let allocator =
        DumbAllocator::new(DumbBackend::new(card(), 100, ScanOutFormat::Rgb565).unwrap());
    let size = allocator.backend().frame_size(30);
    let id = allocator
        .allocate_pool_with_buffers(2, size, "drm-pitch", "display")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    let layout = allocator.backend().layout(&frame.buffer()).unwrap();
    assert_eq!((layout.width, layout.rows), (100, 30));
    assert!(layout.pitch >= 200, "{layout:?}");
    assert!(layout.len >= layout.pitch as usize * 30);
    assert_eq!(frame.buffer().kind, MemoryKind::ScanOut);
    frame.as_mut_slice().unwrap().fill(0x5a);
}

#[test]
fn presented_frames_reach_the_screen_by_flips() {
    if !available() {
        return;
    }
    let (allocator, scan_out, id) = display(3);
    let (width, height) = scan_out.mode_size();
    println!("mode {width}x{height} at {} Hz", scan_out.refresh_hz());
    let pool = allocator.pool(id).unwrap();
    let mut presenter = Presenter::new(scan_out);
    let colours = [
        ("red", [0xff, 0, 0]),
        ("green", [0, 0xff, 0]),
        ("blue", [0x20, 0x40, 0xff]),
        ("white", [0xff; 3]),
    ];
    for (round, (name, rgb)) in colours.into_iter().enumerate() {
        let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
        let layout = allocator.backend().layout(&frame.buffer()).unwrap();
        let bytes = frame.as_mut_slice().unwrap();
        common::fill_xrgb(
            bytes,
            layout.pitch as usize,
            width as usize,
            height as usize,
            rgb,
        );
        frame.submit();
        presenter.show_next(&pool, Wait::NoWait).unwrap();
        assert_eq!(
            pool.counts().free,
            2,
            "round {round}: the frame before the shown one was released"
        );
        if let Some(verdict) = common::screen_shows(&format!("drm-flip-{round}-{name}"), rgb) {
            verdict.unwrap_or_else(|why| panic!("the screen does not show {name}: {why}"));
        }
    }
}

#[test]
fn buffers_smaller_than_the_mode_are_refused() {
    if !available() {
        return;
    }
    let allocator = narrow(card());
    let mut presenter = Presenter::new(DrmScanOut::new(allocator.backend()).unwrap());
    let pool = one_frame_pool(&allocator, 16, "drm-small");
    pool.acquire_free(Wait::NoWait).unwrap().submit();
    match presenter.show_next(&pool, Wait::NoWait) {
        Err(ShowError::Present(PresentError::TooSmall {
            width: 64,
            rows: 16,
            ..
        })) => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }
    assert_eq!(pool.counts().free, 1, "the refused frame went back");
}

#[test]
fn a_second_master_is_told_the_card_is_busy() {
    if !available() {
        return;
    }
    let first = DumbBackend::new(card(), 64, ScanOutFormat::Xrgb8888).unwrap();
    let _master = DrmScanOut::new(&first).unwrap();
    let second = DumbBackend::new(card(), 64, ScanOutFormat::Xrgb8888).unwrap();
    match DrmScanOut::new(&second) {
        Err(err @ DisplayError::Busy { .. }) => {
            let DisplayError::Busy { source, .. } = &err else {
                unreachable!()
            };
            assert_eq!(
                source.raw_os_error(),
                Some(rustix::io::Errno::BUSY.raw_os_error())
            );
            assert!(err.to_string().contains("another process"), "{err}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Not being master, the second card may not change the display either.
    let fb = second.card().resource_handles().unwrap();
    let crtc = fb.crtcs()[0];
    let refused = second
        .card()
        .set_crtc(crtc, None, (0, 0), &[], None)
        .unwrap_err();
    assert_eq!(
        refused.raw_os_error(),
        Some(rustix::io::Errno::ACCESS.raw_os_error())
    );
}

/// The card of the vgem driver (virtual GEM: dumb buffers and PRIME, no display), if loaded.
fn vgem_card() -> Option<DrmCard> {
    let mut nodes: Vec<_> = std::fs::read_dir("/dev/dri")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    nodes.sort();
    let found = nodes
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("card"))
        })
        .filter_map(|path| DrmCard::open(path).ok())
        .find(|card| card.driver_name().is_ok_and(|name| name == "vgem"));
    if found.is_none() {
        common::skip("no vgem card (the VM of `cargo xtask vm-test` loads vgem)");
    }
    found
}

#[test]
fn buffers_export_as_dma_bufs() {
    if !available() {
        return;
    }
    let Some(vgem) = vgem_card() else { return };
    let path = vgem.path().to_path_buf();
    let allocator = narrow(vgem);
    let pool = one_frame_pool(&allocator, 64, "drm-prime");
    let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
    frame.as_mut_slice().unwrap().fill(0xc3);
    let buffer = frame.buffer();
    let layout = allocator.backend().layout(&buffer).unwrap();
    let dmabuf = allocator.backend().export(&buffer).unwrap();
    // Importing it back on the same open card gives the same GEM object, so the same handle.
    let imported = allocator
        .backend()
        .card()
        .prime_fd_to_buffer(dmabuf.as_fd())
        .unwrap();
    assert_eq!(imported, layout.handle);
    // Another client of the card (as another process would be) imports it as its own handle.
    let other = DrmCard::open(&path).unwrap();
    let handle = other.prime_fd_to_buffer(dmabuf.as_fd()).unwrap();
    println!(
        "exported {:?} as a dma-buf; another client imported it as {handle:?}",
        layout.handle
    );
    // The dma-buf itself maps and shows the bytes written through the pool buffer.
    // SAFETY: a fresh shared read-only mapping of the dma-buf; it aliases nothing of ours.
    let mapped = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            layout.len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            &dmabuf,
            0,
        )
    }
    .unwrap();
    // SAFETY: `mapped` maps `layout.len` readable bytes until the munmap below.
    let bytes = unsafe { std::slice::from_raw_parts(mapped.cast::<u8>(), layout.len) };
    assert!(bytes[..buffer.size].iter().all(|&b| b == 0xc3));
    // SAFETY: unmaps the mapping made above, once; `bytes` is not used after.
    unsafe { rustix::mm::munmap(mapped, layout.len) }.unwrap();
    let heap =
        buffer_core::BufferPool::with_heap_buffers(buffer_core::PoolConfig::new("heap"), 1, 64)
            .unwrap();
    let not_ours = heap.acquire_free(Wait::NoWait).unwrap().buffer();
    let err = allocator.backend().export(&not_ours).unwrap_err();
    assert!(
        err.to_string().contains("not a dumb buffer of this card"),
        "{err}"
    );
}

#[test]
fn a_driver_without_prime_export_says_so() {
    if !available() {
        return;
    }
    let allocator = narrow(card());
    let id = allocator
        .allocate_pool_with_buffers(1, 4096, "drm-no-prime", "display")
        .unwrap();
    let pool = allocator.pool(id).unwrap();
    let buffer = pool.acquire_free(Wait::NoWait).unwrap().buffer();
    match allocator.backend().export(&buffer) {
        Ok(_) => println!("{} exports dma-bufs", card().driver_name().unwrap()),
        Err(err @ ExportError::Unsupported { .. }) => {
            println!("{err}");
            assert!(err.to_string().contains("cannot export"), "{err}");
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn huge_buffers_are_refused_before_the_driver_is_asked() {
    if !available() {
        return;
    }
    let allocator = narrow(card());
    let err = allocator
        .allocate_pool_with_buffers(1, 256 * 20_000, "drm-huge", "display")
        .unwrap_err();
    assert!(err.to_string().contains("more than 16384"), "{err}");
}
