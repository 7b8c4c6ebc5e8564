//! Opening things that are not display devices, and asking for impossible buffers: clear errors,
//! on any machine.

use allocator_fb::{DrmCard, FbDevice, FrameGeometry, OpenError, ScanOutFormat};

fn regular_file() -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("allocator-fb-not-a-device-{}", std::process::id()));
    std::fs::write(&path, b"not a device").unwrap();
    path
}

#[test]
fn a_missing_device_says_how_to_get_one() {
    let err = FbDevice::open("/dev/fb-missing-for-test").unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::NotFound {
                kind: "framebuffer",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("load its driver"), "{err}");
    let err = DrmCard::open("/dev/dri/card-missing-for-test").unwrap_err();
    assert!(
        matches!(err, OpenError::NotFound { kind: "DRM", .. }),
        "{err}"
    );
}

#[test]
fn a_regular_file_is_not_a_device() {
    let path = regular_file();
    for err in [
        FbDevice::open(&path).unwrap_err(),
        DrmCard::open(&path).unwrap_err(),
    ] {
        match &err {
            OpenError::NotADevice { source, .. } => {
                assert_eq!(
                    source.raw_os_error(),
                    Some(rustix::io::Errno::NOTTY.raw_os_error())
                );
            }
            other => panic!("expected NotADevice, got {other:?}"),
        }
        assert!(err.to_string().contains("is not a"), "{err}");
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn another_device_is_not_a_display() {
    let err = FbDevice::open("/dev/null").unwrap_err();
    assert!(matches!(err, OpenError::NotADevice { .. }), "{err}");
    assert!(err.to_string().contains("/dev/fbN"), "{err}");
    let err = DrmCard::open("/dev/zero").unwrap_err();
    assert!(matches!(err, OpenError::NotADevice { .. }), "{err}");
    assert!(err.to_string().contains("/dev/dri/cardN"), "{err}");
}

#[test]
fn impossible_sizes_and_formats_are_rejected() {
    for (width, height) in [(0, 480), (640, 0), (20_000, 480), (640, 70_000)] {
        let err = FrameGeometry::new(width, height, ScanOutFormat::Xrgb8888).unwrap_err();
        assert!(err.to_string().contains("between 1 and 16384"), "{err}");
    }
    for fourcc in [*b"NV12", *b"YUYV", *b"\0\0\0\0"] {
        let err = ScanOutFormat::from_fourcc(fourcc).unwrap_err();
        assert!(err.to_string().contains("XR24"), "{err}");
    }
}
