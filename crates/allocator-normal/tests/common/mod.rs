//! Helpers shared by the integration tests.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

thread_local! {
    /// What the subscriber wrote for this thread while [`logged`] runs.
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes to the calling thread's capture, if it has one.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with_borrow_mut(|captured| {
            if let Some(captured) = captured {
                captured.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `tracing` logs (debug level and above) on this thread while `f` runs, as text.
///
/// One global subscriber serves every test thread: `tracing` caches per call site whether
/// anyone listens, and a subscriber scoped to one thread loses that race against tests running
/// the same call sites on other threads.
pub fn logged(f: impl FnOnce()) -> String {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
    CAPTURED.set(Some(Vec::new()));
    f();
    let captured = CAPTURED.take().unwrap_or_default();
    String::from_utf8(captured).expect("tracing writes UTF-8")
}
