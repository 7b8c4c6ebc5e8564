//! Wrapping: `AVFrame`s made elsewhere become filled buffers without a copy and are freed exactly
//! once, whatever is dropped first (counted by their buffers' free callbacks).

// Test set-up drives FFmpeg through sequences of C calls; each block's comment covers its
// sequence.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use allocator_avframe::{DecodedFrame, ffi as ff, pattern};
use buffer_core::{AccessError, BufferPool, PixelFormat, PoolConfig, Wait};

const W: i32 = 64;
const H: i32 = 48;

unsafe extern "C" fn counting_free(opaque: *mut c_void, data: *mut u8) {
    // SAFETY: `opaque` is the counter `Arc::into_raw` leaked for this buffer, taken back once.
    let counter = unsafe { Arc::from_raw(opaque.cast::<AtomicUsize>()) };
    counter.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `data` came from `av_malloc` in `buffer`.
    unsafe { ff::av_free(data.cast()) };
}

/// A buffer of `size` bytes whose free is counted in `frees`.
fn buffer(size: usize, frees: &Arc<AtomicUsize>) -> *mut ff::AVBufferRef {
    // SAFETY: plain allocation; the buffer takes the memory and the counter reference.
    unsafe {
        let data = ff::av_malloc(size).cast::<u8>();
        assert!(!data.is_null());
        let opaque = Arc::into_raw(Arc::clone(frees)).cast_mut().cast();
        let buf = ff::av_buffer_create(data, size, Some(counting_free), opaque, 0);
        assert!(!buf.is_null());
        buf
    }
}

/// A YUV 4:2:0 frame of pattern `sequence`, all planes in one allocation.
fn frame(sequence: u64, frees: &Arc<AtomicUsize>) -> DecodedFrame {
    let format = ff::AVPixelFormat::AV_PIX_FMT_YUV420P;
    // SAFETY: FFmpeg's image helpers on a buffer of the size they computed; the frame takes the
    // buffer reference.
    unsafe {
        let size = ff::av_image_get_buffer_size(format, W, H, 64) as usize;
        let buf = buffer(size, frees);
        let frame = ff::av_frame_alloc();
        (*frame).format = format as i32;
        (*frame).width = W;
        (*frame).height = H;
        (*frame).pts = sequence as i64;
        (*frame).buf[0] = buf;
        ff::av_image_fill_arrays(
            (*frame).data.as_mut_ptr(),
            (*frame).linesize.as_mut_ptr(),
            (*buf).data,
            format,
            W,
            H,
            64,
        );
        for plane in 0..3 {
            let (w, h) = if plane == 0 { (W, H) } else { (W / 2, H / 2) };
            for y in 0..h as usize {
                for x in 0..w as usize {
                    *(*frame).data[plane].add(y * (*frame).linesize[plane] as usize + x) =
                        pattern(plane, x, y, sequence);
                }
            }
        }
        DecodedFrame::from_raw(frame)
    }
}

#[test]
fn a_wrapped_frame_is_read_in_place_and_freed_when_released() {
    let frees = Arc::new(AtomicUsize::new(0));
    let pool = BufferPool::create(PoolConfig::new("wrap")).unwrap();
    let source = frame(5, &frees);
    let luma = source.plane(0).unwrap().as_ptr();
    source.into_pool(&pool).unwrap();
    let read = pool.acquire_filled(Wait::NoWait).unwrap();
    let video = read.meta().video;
    assert_eq!(read.meta().sequence, 5);
    assert_eq!(
        (video.pixel_format, video.width, video.height),
        (PixelFormat::YUV420, 64, 48)
    );
    let planes = video.planes();
    assert_eq!(planes.len(), 3);
    assert_eq!(
        (planes[0].rows, planes[1].rows, planes[2].rows),
        (48, 24, 24)
    );
    let bytes = read.as_slice().unwrap();
    assert_eq!(
        bytes.as_ptr(),
        luma,
        "the buffer is the frame's memory: no copy"
    );
    for (index, plane) in planes.iter().enumerate() {
        let w = if index == 0 { 64 } else { 32 };
        for y in 0..plane.rows as usize {
            for x in 0..w {
                let at = plane.offset as usize + y * plane.stride as usize + x;
                assert_eq!(bytes[at], pattern(index, x, y, 5));
            }
        }
    }
    assert_eq!(frees.load(Ordering::SeqCst), 0);
    drop(read);
    assert_eq!(frees.load(Ordering::SeqCst), 1, "freed when released");
    assert_eq!(pool.counts().total, 0, "and out of the pool");
    drop(pool);
    assert_eq!(frees.load(Ordering::SeqCst), 1, "exactly once");
}

#[test]
fn a_wrapped_frame_is_freed_once_when_the_pool_goes_first() {
    let frees = Arc::new(AtomicUsize::new(0));
    let pool = BufferPool::create(PoolConfig::new("wrap")).unwrap();
    frame(1, &frees).into_pool(&pool).unwrap();
    frame(2, &frees).into_pool(&pool).unwrap();
    drop(pool);
    assert_eq!(frees.load(Ordering::SeqCst), 2);
}

#[test]
fn a_frame_read_while_its_pool_is_destroyed_is_freed_when_the_reader_lets_go() {
    let frees = Arc::new(AtomicUsize::new(0));
    let owner = BufferPool::create(PoolConfig::new("wrap")).unwrap();
    frame(1, &frees).into_pool(&owner).unwrap();
    let handle = owner.pool().clone();
    let read = handle.acquire_filled(Wait::NoWait).unwrap();
    drop(owner);
    assert_eq!(frees.load(Ordering::SeqCst), 0, "still read");
    drop(read);
    assert_eq!(frees.load(Ordering::SeqCst), 1);
    drop(handle);
    assert_eq!(frees.load(Ordering::SeqCst), 1);
}

#[test]
fn frames_with_planes_in_separate_allocations_are_read_plane_by_plane() {
    let frees = Arc::new(AtomicUsize::new(0));
    let pool = BufferPool::create(PoolConfig::new("wrap")).unwrap();
    // SAFETY: one buffer per plane, each large enough for its plane; the frame takes them.
    let scattered = unsafe {
        let frame = ff::av_frame_alloc();
        (*frame).format = ff::AVPixelFormat::AV_PIX_FMT_YUV420P as i32;
        (*frame).width = W;
        (*frame).height = H;
        (*frame).pts = 4;
        for plane in 0..3 {
            let (stride, rows) = if plane == 0 { (W, H) } else { (W / 2, H / 2) };
            let buf = buffer((stride * rows) as usize, &frees);
            (*frame).buf[plane] = buf;
            (*frame).data[plane] = (*buf).data;
            (*frame).linesize[plane] = stride;
            for y in 0..rows as usize {
                for x in 0..stride as usize {
                    *(*buf).data.add(y * stride as usize + x) = pattern(plane, x, y, 4);
                }
            }
        }
        DecodedFrame::from_raw(frame)
    };
    let chroma = scattered.plane(2).unwrap().as_ptr();
    scattered.into_pool(&pool).unwrap();
    let read = pool.acquire_filled(Wait::NoWait).unwrap();
    assert!(matches!(
        read.as_slice(),
        Err(AccessError::Scattered { planes: 3, .. })
    ));
    assert_eq!(read.plane(2).unwrap().as_ptr(), chroma, "in place");
    for plane in 0..3 {
        let bytes = read.plane(plane).unwrap();
        let stride = read.meta().video.planes()[plane].stride as usize;
        assert_eq!(bytes[stride + 1], pattern(plane, 1, 1, 4));
    }
    assert!(matches!(
        read.plane(3),
        Err(AccessError::NoSuchPlane { .. })
    ));
    drop(read);
    assert_eq!(
        frees.load(Ordering::SeqCst),
        3,
        "all three allocations freed once"
    );

    let segment = format!("wrap-{}", std::process::id());
    let shared =
        BufferPool::create_shared(&segment, PoolConfig::new("s").with_capacity(1), 1, 64).unwrap();
    let err = frame(1, &frees).into_pool(&shared).unwrap_err();
    assert!(
        err.to_string().contains("shared between processes"),
        "{err}"
    );
    assert_eq!(
        frees.load(Ordering::SeqCst),
        4,
        "a refused frame is freed once too"
    );
}

#[test]
fn frames_from_ffmpegs_own_allocator_are_wrapped_in_place() {
    use allocator_avframe::{ClipCodec, PoolDecoder, write_clip};
    let path = std::env::temp_dir().join(format!("bufpool-wrap-{}.mkv", std::process::id()));
    write_clip(&path, ClipCodec::Ffv1, 64, 48, 3).unwrap();
    let pool = BufferPool::create(PoolConfig::new("wrapped").with_capacity(4)).unwrap();
    let mut decoder = PoolDecoder::with_ffmpeg_allocator(&path, 1).unwrap();
    let mut sequence = 0;
    while let Some(frame) = decoder.next_frame().unwrap() {
        let luma = frame.plane(0).unwrap().as_ptr();
        frame.into_pool(&pool).unwrap();
        let read = pool.acquire_filled(Wait::NoWait).unwrap();
        let y = read.plane(0).unwrap();
        assert_eq!(y.as_ptr(), luma, "no copy");
        assert_eq!(y[3], pattern(0, 3, 0, sequence));
        let u = read.plane(1).unwrap();
        assert_eq!(u[2], pattern(1, 2, 0, sequence));
        sequence += 1;
    }
    assert_eq!(sequence, 3);
    assert_eq!(pool.counts().total, 0, "each left the pool when released");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_frame_in_an_allocators_pool_is_freed_once_when_the_allocator_goes_first() {
    use allocator_base::PoolAllocator;
    use allocator_normal::{NormalAllocator, NormalBackend};
    let frees = Arc::new(AtomicUsize::new(0));
    let allocator = NormalAllocator::new(NormalBackend::default());
    let pool = allocator
        .allocate_pool(PoolConfig::new("decoder-frames"), 0, 1)
        .unwrap();
    frame(1, &frees)
        .into_allocator_pool(&allocator, pool)
        .unwrap();
    frame(2, &frees)
        .into_allocator_pool(&allocator, pool)
        .unwrap();
    let read = allocator.pool(pool).unwrap();
    assert_eq!(read.counts().filled, 2);
    drop(read);
    drop(allocator);
    assert_eq!(
        frees.load(Ordering::SeqCst),
        2,
        "destroyed with the allocator, freed once each"
    );

    let other = NormalAllocator::new(NormalBackend::default());
    let foreign = other.allocate_pool(PoolConfig::new("other"), 0, 1).unwrap();
    let mine = NormalAllocator::new(NormalBackend::default());
    let err = frame(3, &frees)
        .into_allocator_pool(&mine, foreign)
        .unwrap_err();
    assert!(
        matches!(err, allocator_avframe::WrapError::Ownership(_)),
        "{err}"
    );
    assert_eq!(
        frees.load(Ordering::SeqCst),
        3,
        "a refused frame is freed once"
    );
}
