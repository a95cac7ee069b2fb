//! An in-memory sink for log lines, for tests that read what was logged (R-SAFE-2: no secret in
//! any log line; the log filter's caps). Give a clone to the subscriber's writer
//! (`.with_writer(move || buffer.clone())`) and read [`LogBuffer::text`] afterwards.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::lock;

/// Every byte written to any clone, in order.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    ///
    /// # Panics
    /// When what was written is not UTF-8 (a log line never is).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8(lock(&self.0).clone()).expect("log lines are UTF-8")
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
