//! Liveness with real processes: a process is reaped only once the kernel says it is gone, and
//! then at once. Each case is one that a liveness guessed from `/proc` gets wrong: an observer
//! out of file descriptors, a process in another PID namespace, a process whose main thread
//! exited, a child forked after attaching, a stopped process, a dead reaper that held the
//! cleanup lock, and a killed waiter's registration.
//!
//! "A dead one is reclaimed within 100 ms of the next waiting acquire": checked in each case
//! where a holder dies, from the start of that acquire.

mod common;
mod peer;

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use buffer_core::{AcquireError, BufferPool, PoolConfig, SlotState, Wait};
use common::{read_until, role, spawn, wait_exit};

const BUFFERS: u32 = 2;
const SIZE: usize = 4096;

/// The child processes' entry point; does nothing when run as a test.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let segment = std::env::var("SEGMENT").unwrap();
    match role.as_str() {
        "holder" => {
            let pool = BufferPool::attach(&segment).unwrap();
            hold_one_and_wait(&pool);
        }
        "observer-out-of-fds" => observe_without_fds(&segment),
        "main-thread-exits" => main_thread_exits(segment),
        "forker" => fork_after_attach(&segment),
        "cleanup-lock-holder" => hold_the_cleanup_lock(&segment),
        "waiter" => {
            let pool = BufferPool::attach(&segment).unwrap();
            println!("waiting");
            let _ = pool.acquire_free(Wait::Forever);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Holds one buffer (its first byte set to 0x5a) and waits to be killed.
fn hold_one_and_wait(pool: &BufferPool) -> ! {
    let mut guard = pool.acquire_free(Wait::NoWait).unwrap();
    guard.as_mut_slice().unwrap()[0] = 0x5a;
    println!("holding {} {}", guard.id().slot, std::process::id());
    std::thread::sleep(Duration::from_secs(600));
    unreachable!("killed before")
}

/// Attaches, then uses up its file descriptors and asks about the other processes.
fn observe_without_fds(segment: &str) {
    let pool = BufferPool::attach(segment).unwrap();
    let lowest_free = std::fs::File::open("/dev/null").unwrap();
    let limit = std::os::fd::AsRawFd::as_raw_fd(&lowest_free) as u64;
    drop(lowest_free);
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: hard,
        },
    )
    .unwrap();
    let err = std::fs::File::open("/dev/null").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    let reclaimed = pool.reclaim_dead();
    let waited = pool.acquire_free(Wait::Timeout(Duration::from_millis(300)));
    println!("observed reclaimed={reclaimed} acquired={}", waited.is_ok());
}

/// Forks; the child's main thread exits while another thread attaches and holds a buffer.
fn main_thread_exits(segment: String) {
    // SAFETY: the child only starts a thread and exits its own (main) thread; nothing it uses
    // is left locked by the parent's other threads (they hold no lock while this test runs).
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed"),
        0 => {
            std::thread::spawn(move || {
                let pool = BufferPool::attach(&segment).unwrap();
                hold_one_and_wait(&pool);
            });
            // SAFETY: the `exit` system call (not `exit_group`) ends this, the main, thread only,
            // without unwinding; the process lives on in the other thread. Nothing this thread
            // owns is used afterwards.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("the exit system call returns only on failure");
        }
        _ => {} // the parent is done: its child lives on
    }
}

/// Attaches and holds a buffer, then forks a child that finds the inherited pool closed,
/// drops what it inherited, attaches itself and holds a buffer of its own.
fn fork_after_attach(segment: &str) {
    let pool = BufferPool::attach(segment).unwrap();
    let mut held = pool.acquire_free(Wait::NoWait).unwrap();
    held.as_mut_slice().unwrap()[0] = 1;
    // SAFETY: the child only uses what this thread set up and its own new attachment.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed"),
        0 => {
            let inherited = pool.acquire_free(Wait::Timeout(Duration::from_millis(50)));
            let closed = matches!(inherited, Err(AcquireError::Closed { .. }));
            drop(inherited);
            drop(held); // the parent's buffer: nothing happens to it
            drop(pool); // nor to the parent's entry
            let own = BufferPool::attach(segment).unwrap();
            let guard = own
                .acquire_free(Wait::Timeout(Duration::from_secs(5)))
                .unwrap();
            println!(
                "child holding {} {} inherited-closed={closed}",
                guard.id().slot,
                std::process::id()
            );
            std::thread::sleep(Duration::from_secs(600));
        }
        _ => {
            println!("forker holding {} {}", held.id().slot, std::process::id());
            std::thread::sleep(Duration::from_secs(600));
        }
    }
}

/// Takes the segment's cleanup lock as a reaper would, and waits to be killed with it.
fn hold_the_cleanup_lock(segment: &str) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/bufpool.{segment}"))
        .unwrap();
    // SAFETY: `flock` is a plain C struct; all zeros is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = buffer_core::CLEANUP_LOCK_BYTE as libc::off_t;
    lock.l_len = 1;
    // SAFETY: an open descriptor and a valid `flock`, read by the call.
    let locked = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::F_OFD_SETLK,
            &mut lock,
        )
    };
    assert_eq!(locked, 0, "{}", std::io::Error::last_os_error());
    println!("locked");
    std::thread::sleep(Duration::from_secs(600));
}

fn pool(test: &str) -> (buffer_core::PoolOwner, String) {
    let segment = common::segment_name(test);
    let config = PoolConfig::new(test).with_capacity(BUFFERS);
    let pool = BufferPool::create_shared(&segment, config, BUFFERS, SIZE).unwrap();
    (pool, segment)
}

/// The rest of the first line of `out` that contains `marker`, after it. (Anywhere in the line:
/// a forked process's line may follow its parent's test harness output, such as the `.` that
/// `-q` prints without a newline.)
fn read_after(out: &mut BufReader<std::process::ChildStdout>, marker: &str) -> String {
    loop {
        let line = read_until(out, "");
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].to_owned();
        }
    }
}

/// A child in role `role` that said `holding SLOT PID`: the child, its slot and its pid.
fn holder(segment: &str, role: &str) -> (Child, u32, u32) {
    let mut child = spawn("child_entry", role, &[("SEGMENT", segment.to_owned())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = read_after(&mut out, "holding ");
    let mut words = line.split_whitespace().map(|w| w.parse::<u32>().unwrap());
    let (slot, pid) = (words.next().unwrap(), words.next().unwrap());
    (child, slot, pid)
}

/// Whether slot `slot` is held for writing by pid `pid`.
fn held_by(pool: &BufferPool, slot: u32, pid: u32) -> bool {
    let buffer = pool.buffers().swap_remove(slot as usize);
    buffer.state == Some(SlotState::Writing) && buffer.holder == Some(pid)
}

/// Checks that nothing of `pid`'s is reclaimed now: no reclamation, the buffer still its own.
fn assert_not_reaped(pool: &BufferPool, slot: u32, pid: u32) {
    assert_eq!(pool.reclaim_dead(), 0, "a live process was reaped");
    assert!(held_by(pool, slot, pid), "{:#?}", pool.buffers());
    assert!(
        pool.processes()
            .iter()
            .any(|p| p.alive && p.actor != pool.actor()),
        "{:?}",
        pool.processes()
    );
}

/// After `pid` died: the next waiting acquire gets its buffer back within 100 ms.
fn assert_reclaimed_by_the_next_wait(pool: &BufferPool, want_free: u32) {
    let held: Vec<_> = std::iter::from_fn(|| pool.acquire_free(Wait::NoWait).ok()).collect();
    let started = Instant::now();
    let guard = pool
        .acquire_free(Wait::Timeout(Duration::from_secs(5)))
        .expect("the dead holder's buffer comes back");
    let latency = started.elapsed();
    println!("reclaimed by the next waiting acquire in {latency:?}");
    assert!(latency < Duration::from_millis(100), "{latency:?}");
    drop((held, guard));
    assert_eq!(pool.counts().free, want_free);
    assert_eq!(pool.audit(), Vec::<String>::new());
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn kill_pid(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

/// Waits until process `pid` (not our child) is gone: its files closed (and with them its
/// lock), whether or not its parent has collected it yet.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|mut files| files.next().is_some())
    {
        assert!(Instant::now() < deadline, "pid {pid} did not die");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_observer_out_of_file_descriptors_reaps_no_live_holder() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("emfile");
    let (mut holder, slot, pid) = holder(&segment, "holder");
    let _other = pool.acquire_free(Wait::NoWait).unwrap(); // the pool is empty now
    let mut observer = spawn(
        "child_entry",
        "observer-out-of-fds",
        &[("SEGMENT", segment.clone())],
    );
    let mut out = BufReader::new(observer.stdout.take().unwrap());
    assert_eq!(
        read_until(&mut out, "observed "),
        "reclaimed=0 acquired=false"
    );
    assert!(wait_exit(&mut observer, Duration::from_secs(30)).success());
    assert_not_reaped(&pool, slot, pid);
    drop(_other);
    kill(&mut holder);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_holder_in_another_pid_namespace_is_not_reaped_while_alive() {
    if role().is_some() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: a new PID namespace (unshare --pid) needs root");
        return;
    }
    let (pool, segment) = pool("pidns");
    // `unshare --fork` makes the child pid 1 of its own namespace; --kill-child kills it with
    // unshare.
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(common::ROLE, "holder")
        .env("SEGMENT", &segment)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = read_until(&mut out, "holding ");
    let slot: u32 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        line.ends_with(" 1"),
        "the holder is pid 1 in its namespace: {line}"
    );
    // The entry names pid 1; this namespace's pid 1 is someone else entirely.
    let holder = pool.buffers().swap_remove(slot as usize);
    assert_eq!(holder.state, Some(SlotState::Writing));
    assert_eq!(pool.reclaim_dead(), 0, "a live process was reaped");
    assert_eq!(
        pool.buffers()[slot as usize].state,
        Some(SlotState::Writing)
    );
    // Its pid on this side, to know when it is gone.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()));
    let host_pid: u32 = children.unwrap().trim().parse().unwrap();
    kill(&mut child);
    wait_gone(host_pid);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_process_whose_main_thread_exited_is_alive() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("zombie-main");
    let (mut intermediate, slot, pid) = holder(&segment, "main-thread-exits");
    intermediate.wait().unwrap();
    // The case is real: the kernel shows the process as a zombie (its main thread's state).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(stat.contains(") Z"), "{stat}");
    assert_not_reaped(&pool, slot, pid);
    kill_pid(pid);
    wait_gone(pid);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_child_forked_after_attaching_is_a_new_process() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("fork");
    let mut forker = spawn("child_entry", "forker", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(forker.stdout.take().unwrap());
    let mut parent = None;
    let mut child = None;
    while parent.is_none() || child.is_none() {
        let line = read_until(&mut out, "");
        let after = |marker: &str| Some(line[line.find(marker)? + marker.len()..].to_owned());
        let numbers = |rest: &str| -> (u32, u32) {
            let mut words = rest.split_whitespace().map(|w| w.parse().unwrap());
            (words.next().unwrap(), words.next().unwrap())
        };
        if let Some(rest) = after("forker holding ") {
            parent = Some(numbers(&rest));
        } else if let Some(rest) = after("child holding ") {
            assert!(rest.ends_with("inherited-closed=true"), "{line}");
            child = Some(numbers(&rest));
        }
    }
    let ((parent_slot, parent_pid), (child_slot, child_pid)) = (parent.unwrap(), child.unwrap());
    // The child dropped its inherited handle and guard: the parent's entry and buffer stand.
    assert!(held_by(&pool, parent_slot, parent_pid));
    assert!(held_by(&pool, child_slot, child_pid));
    assert_eq!(pool.processes().len(), 3, "{:?}", pool.processes());
    assert_eq!(pool.reclaim_dead(), 0);
    // The parent dies; its child (which inherited its files) does not keep it alive.
    kill(&mut forker);
    let started = Instant::now();
    let back = pool
        .acquire_free(Wait::Timeout(Duration::from_secs(5)))
        .expect("the forker's buffer comes back");
    println!("the forker's buffer came back in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(back.id().slot, parent_slot);
    assert!(held_by(&pool, child_slot, child_pid), "the child's stays");
    drop(back);
    kill_pid(child_pid);
    wait_gone(child_pid);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_stopped_process_is_alive() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("stopped");
    let (mut holder, slot, pid) = holder(&segment, "holder");
    let pid_t = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid_t, rustix::process::Signal::STOP).unwrap();
    let _other = pool.acquire_free(Wait::NoWait).unwrap();
    assert!(
        pool.acquire_free(Wait::Timeout(Duration::from_millis(250)))
            .is_err()
    );
    assert_not_reaped(&pool, slot, pid);
    drop(_other);
    rustix::process::kill_process(pid_t, rustix::process::Signal::CONT).unwrap();
    kill(&mut holder);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_dead_reaper_does_not_keep_the_cleanup_lock() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("cleanup-lock");
    let mut reaper = spawn(
        "child_entry",
        "cleanup-lock-holder",
        &[("SEGMENT", segment.clone())],
    );
    let mut out = BufReader::new(reaper.stdout.take().unwrap());
    read_until(&mut out, "locked");
    let (mut holder, slot, _) = holder(&segment, "holder");
    kill(&mut holder);
    // A live reaper holds the lock: nobody else reclaims meanwhile, and nobody waits for it.
    let started = Instant::now();
    assert_eq!(pool.reclaim_dead(), 0);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        pool.buffers()[slot as usize].state,
        Some(SlotState::Writing)
    );
    // It dies holding the lock (its pid may be reused at once: the lock was never its pid's).
    kill(&mut reaper);
    assert_reclaimed_by_the_next_wait(&pool, BUFFERS);
}

#[test]
fn a_killed_waiters_registration_is_cleared_by_the_reaper() {
    if role().is_some() {
        return;
    }
    let (pool, segment) = pool("waiter");
    let held: Vec<_> = (0..BUFFERS)
        .map(|_| pool.acquire_free(Wait::NoWait).unwrap())
        .collect();
    let raw = peer::RawSegment::map(&segment);
    let sleepers = buffer_core::testing::layout(BUFFERS, 0, 2).free_sleepers;
    assert_eq!(raw.load_u64(sleepers), 0);
    let mut waiter = spawn("child_entry", "waiter", &[("SEGMENT", segment.clone())]);
    let mut out = BufReader::new(waiter.stdout.take().unwrap());
    read_until(&mut out, "waiting");
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw.load_u64(sleepers) == 0 {
        assert!(Instant::now() < deadline, "the waiter never registered");
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(&mut waiter);
    assert_ne!(
        raw.load_u64(sleepers),
        0,
        "the dead waiter's bit is left set"
    );
    pool.reclaim_dead();
    assert_eq!(
        raw.load_u64(sleepers),
        0,
        "the reaper cleared the dead waiter's bit: releases make no futex call for it"
    );
    drop(held);
}
