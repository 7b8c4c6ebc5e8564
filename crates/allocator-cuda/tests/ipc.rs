//! A device-memory pool shared with another process through CUDA IPC handles: the child opens
//! the same device buffers, reads what the parent uploaded, and a killed child's buffers come
//! back. The test binary re-runs itself as the child. Skips without a GPU.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use allocator_cuda::{CudaStream, DeviceIpcPool, PinnedAllocator, PinnedBackend};
use buffer_core::{PoolConfig, Wait};

const BUFFERS: u32 = 3;
const LEN: usize = 1 << 20;
const ROLE: &str = "BUFPOOL_CUDA_ROLE";

fn spawn(role: &str, segment: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE, role)
        .env("SEGMENT", segment)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// The first line of `out` starting with `prefix`, without it.
fn line(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut text = String::new();
    loop {
        text.clear();
        assert!(
            out.read_line(&mut text).unwrap() > 0,
            "the child stopped before {prefix:?}"
        );
        if let Some(rest) = text.trim_end().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

fn sum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// The child: attach, then read (copy every filled device buffer back and print its sum) or
/// hold two buffers until killed.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let segment = std::env::var("SEGMENT").unwrap();
    let device = common::device0();
    let pool = match DeviceIpcPool::attach(&segment, device.clone()) {
        Ok(pool) => pool,
        Err(err) => {
            println!("refused {err}");
            return;
        }
    };
    match role.as_str() {
        "reader" => {
            let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
            let host = common::pool_of(&pinned, 1, LEN, "child");
            let stream = CudaStream::new(device).unwrap();
            let mut sums = Vec::new();
            while let Ok(frame) = pool.acquire_filled(Wait::NoWait) {
                let sequence = frame.meta().sequence;
                let (_, mut back) = stream
                    .copy(frame, host.acquire_free(Wait::NoWait).unwrap())
                    .unwrap()
                    .wait()
                    .unwrap();
                sums.push(format!("{sequence}:{}", sum(back.as_mut_slice().unwrap())));
            }
            println!("sums {}", sums.join(","));
        }
        "holder" => {
            let held: Vec<_> = (0..2)
                .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
                .collect();
            println!("holding {}", held.len());
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn another_process_reads_the_same_device_memory() {
    let Some(device) = common::device() else {
        return;
    };
    let segment = format!("cuda-ipc-read-{}", std::process::id());
    let pool = DeviceIpcPool::create(
        &segment,
        PoolConfig::new("gpu-ipc"),
        device.clone(),
        BUFFERS,
        LEN,
    )
    .unwrap();
    let pinned = PinnedAllocator::new(PinnedBackend::new(device.clone()));
    let host = common::pool_of(&pinned, 1, LEN, "parent");
    let stream = CudaStream::new(device).unwrap();
    let mut expected = Vec::new();
    for sequence in 0..u64::from(BUFFERS) {
        let mut up = host.acquire_free(Wait::NoWait).unwrap();
        let bytes = up.as_mut_slice().unwrap();
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u64 * 7 + sequence * 13) as u8;
        }
        expected.push(format!("{sequence}:{}", sum(bytes)));
        let (_, mut on_gpu) = stream
            .copy(up, pool.acquire_free(Wait::NoWait).unwrap())
            .unwrap()
            .wait()
            .unwrap();
        on_gpu.meta_mut().sequence = sequence;
        on_gpu.submit();
    }
    let (mut child, mut out) = spawn("reader", &segment);
    let reply = line(&mut out, "");
    assert!(
        !reply.starts_with("refused"),
        "the driver refused CUDA IPC: {reply}"
    );
    let sums = reply
        .strip_prefix("sums ")
        .expect("the child prints its sums");
    assert!(child.wait().unwrap().success());
    assert_eq!(sums, expected.join(","));
    assert_eq!(
        pool.counts().free,
        BUFFERS,
        "the child released every frame"
    );
}

#[test]
fn a_killed_process_gives_its_device_buffers_back() {
    let Some(device) = common::device() else {
        return;
    };
    let segment = format!("cuda-ipc-kill-{}", std::process::id());
    let pool =
        DeviceIpcPool::create(&segment, PoolConfig::new("gpu-ipc"), device, BUFFERS, LEN).unwrap();
    let (mut child, mut out) = spawn("holder", &segment);
    assert_eq!(line(&mut out, "holding "), "2");
    assert_eq!(pool.counts().free, BUFFERS - 2);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pool.reclaim_dead(), 2);
    assert_eq!(pool.counts().free, BUFFERS);
}
