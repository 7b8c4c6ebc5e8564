//! Shared pools of foreign memory between real processes: each buffer is its own shared-memory
//! file, named by its token, that the other process maps itself when it attaches (as a CUDA
//! backend opens IPC memory handles). The test binary re-runs itself as the other process.

mod common;

use std::io::BufReader;
use std::os::fd::OwnedFd;
use std::time::Duration;

use buffer_core::{
    AttachError, BufferMemory, BufferPool, ForeignBuffer, ForeignToken, MemoryKind, PoolConfig,
    SHARE_TOKEN_LEN, Wait,
};
use common::{checksum, fill, read_until, role, segment_name, spawn, wait_exit};
use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm::OFlags;

const BUFFERS: usize = 3;
const LEN: usize = 8192;
const LIMIT: Duration = Duration::from_secs(60);

/// A mapping of one shared-memory file, unmapped when dropped.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr` is a mapping of `len` bytes made in `map`, unmapped only here.
        unsafe { rustix::mm::munmap(self.addr as *mut _, self.len) }.unwrap();
    }
}

/// Maps `len` bytes of the shared-memory file open as `fd`.
fn map(fd: &OwnedFd, len: usize) -> Mapping {
    // SAFETY: a fresh shared mapping of the file; it aliases nothing of ours.
    let addr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .unwrap();
    Mapping {
        addr: addr as usize,
        len,
    }
}

/// The shared-memory file name a token holds.
fn token_name(token: &[u8; SHARE_TOKEN_LEN]) -> String {
    let end = token
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(SHARE_TOKEN_LEN);
    String::from_utf8(token[..end].to_vec()).unwrap()
}

/// Opens a foreign buffer by mapping the file its token names.
fn open(token: ForeignToken<'_>) -> Result<BufferMemory, String> {
    let name = token_name(token.token);
    let fd = rustix::shm::open(name.as_str(), OFlags::RDWR, Mode::empty())
        .map_err(|e| format!("shm_open {name}: {e}"))?;
    let mapping = map(&fd, token.size);
    let addr = mapping.addr as *mut u8;
    // SAFETY: the mapping holds `size` bytes and moves into the owner, unmapped when the pool
    // drops it.
    Ok(unsafe { BufferMemory::owned(addr, token.size, token.kind, None, Box::new(mapping)) })
}

/// Creates the pool: each buffer its own shared-memory file named in its token.
fn create(segment: &str) -> buffer_core::PoolOwner {
    let buffers = (0..BUFFERS)
        .map(|i| {
            let name = format!("/{segment}-buffer-{i}");
            // Linked while the test runs, so the child can open it by name.
            let fd = rustix::shm::open(
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
                Mode::RUSR | Mode::WUSR,
            )
            .unwrap();
            rustix::fs::ftruncate(&fd, LEN as u64).unwrap();
            let mapping = map(&fd, LEN);
            let addr = mapping.addr as *mut u8;
            let mut token = [0u8; SHARE_TOKEN_LEN];
            token[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: the mapping holds LEN bytes and moves into the owner.
            let memory = unsafe {
                BufferMemory::owned(addr, LEN, MemoryKind::Host, None, Box::new(mapping))
            };
            ForeignBuffer { memory, token }
        })
        .collect();
    BufferPool::create_shared_foreign(
        segment,
        PoolConfig::new("foreign").with_capacity(4),
        buffers,
    )
    .unwrap()
}

fn unlink_buffers(segment: &str) {
    for i in 0..BUFFERS {
        rustix::shm::unlink(format!("/{segment}-buffer-{i}").as_str()).ok();
    }
}

/// The child's entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let segment = std::env::var("SEGMENT").unwrap();
    let pool = BufferPool::attach_foreign(&segment, &mut open).unwrap();
    match role.as_str() {
        "reader" => {
            let mut sums = Vec::new();
            while let Ok(frame) = pool.acquire_filled(Wait::NoWait) {
                sums.push(format!(
                    "{}:{}",
                    frame.meta().sequence,
                    checksum(frame.as_slice().unwrap())
                ));
            }
            println!("sums {}", sums.join(","));
        }
        "holder" => {
            let held: Vec<_> = (0..2)
                .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
                .collect();
            println!("holding {}", held.len());
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn another_process_opens_the_buffers_and_reads_in_place() {
    let segment = segment_name("foreign-read");
    let pool = create(&segment);
    let mut expected = Vec::new();
    for sequence in 0..BUFFERS as u64 {
        let mut frame = pool.acquire_free(Wait::NoWait).unwrap();
        let bytes = frame.as_mut_slice().unwrap();
        fill(bytes, sequence);
        expected.push(format!("{sequence}:{}", checksum(bytes)));
        frame.meta_mut().sequence = sequence;
        frame.submit();
    }
    let mut child = spawn("child_entry", "reader", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let sums = read_until(&mut out, "sums ");
    assert!(wait_exit(&mut child, LIMIT).success());
    assert_eq!(sums, expected.join(","));
    assert_eq!(
        pool.counts().free,
        BUFFERS as u32,
        "the reader released every frame"
    );
    unlink_buffers(&segment);
}

#[test]
fn a_killed_process_gives_its_foreign_buffers_back() {
    let segment = segment_name("foreign-kill");
    let pool = create(&segment);
    let mut child = spawn("child_entry", "holder", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(read_until(&mut out, "holding "), "2");
    assert_eq!(pool.counts().free, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pool.reclaim_dead(), 2);
    assert_eq!(pool.counts().free, BUFFERS as u32);
    unlink_buffers(&segment);
}

#[test]
fn host_buffers_cannot_be_attached_without_opening_them() {
    let segment = segment_name("foreign-plain");
    let _pool = create(&segment);
    assert_eq!(
        BufferPool::attach(&segment).unwrap_err(),
        AttachError::NeedsOpener
    );
    let err =
        BufferPool::attach_foreign(&segment, &mut |_| Err("no such handle".into())).unwrap_err();
    assert_eq!(
        err,
        AttachError::Open {
            index: 0,
            reason: "no such handle".into()
        }
    );
    assert!(err.to_string().contains("cannot open buffer 0"), "{err}");
    let short = BufferPool::attach_foreign(&segment, &mut |token| {
        drop(open(token)?);
        // SAFETY: never used: the attach refuses it for its length.
        Ok(unsafe { BufferMemory::external(std::ptr::dangling_mut(), 1, token.kind, None) })
    });
    assert!(matches!(short, Err(AttachError::Open { .. })));
    unlink_buffers(&segment);
}
