//! Opening the driver and devices: errors, never panics, on any machine. The count check skips
//! without a GPU (failing instead with `BUFPOOL_REQUIRE_GPU` set).

mod common;

use allocator_cuda::{CudaDevice, CudaError, device_count, driver_present};

#[test]
fn a_machine_without_a_driver_gets_an_error_not_a_panic() {
    match CudaDevice::open(0) {
        Ok(device) => {
            println!("device 0: {}", device.name());
            assert!(device_count() >= 1);
        }
        Err(CudaError::NoDriver) => {
            assert!(!driver_present());
            assert_eq!(device_count(), 0);
            let message = CudaError::NoDriver.to_string();
            assert!(message.contains("install the NVIDIA driver"), "{message}");
        }
        Err(CudaError::NoDevice(why)) => {
            assert!(driver_present());
            println!("driver without devices: {why}");
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn a_missing_ordinal_is_named() {
    match CudaDevice::open(999) {
        Err(CudaError::NoSuchDevice { ordinal, count }) => {
            assert_eq!(ordinal, 999);
            assert_eq!(count, device_count());
        }
        Err(CudaError::NoDriver | CudaError::NoDevice(_)) => {
            common::skip("no CUDA device to count");
        }
        other => panic!("expected NoSuchDevice, got {other:?}"),
    }
}
