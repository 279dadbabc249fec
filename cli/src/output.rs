//! Standard output for every command, and the one place where a closed stdout is
//! noticed. A reader that goes away (`medvault audit log V --json | head -1`) makes the
//! next write fail with [`std::io::ErrorKind::BrokenPipe`]; the library may wrap that
//! error in its own (e.g. "JSON: Broken pipe"), losing its kind. [`Stdout`] records it
//! before any wrapping, and `main` then ends the command quietly with exit 0, as a Unix
//! filter does.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when a write to stdout failed because its reader closed the pipe.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// True once a write to stdout (through [`Stdout`] or `print!`) found the pipe closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Notes a failed write to stdout; returns the error unchanged.
fn note(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    e
}

/// Marks stdout as closed when `message` is the panic of `print!`/`println!` on a closed
/// pipe ("failed printing to stdout: Broken pipe (os error 32)"); returns whether it was.
pub fn note_print_panic(message: &str) -> bool {
    let closed = message.starts_with("failed printing to stdout")
        && (message.contains("Broken pipe") || message.contains("os error 32"));
    if closed {
        CLOSED.store(true, Ordering::Relaxed);
    }
    closed
}

/// The locked standard output, which records a closed pipe (see the module docs).
pub struct Stdout(io::StdoutLock<'static>);

/// The locked standard output of every command.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(note)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(note)
    }
}

/// `println!` through [`stdout`]: returns the write's `io::Result` instead of panicking
/// on a closed pipe (and records it, see the module docs).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = $crate::output::stdout();
        writeln!(out, $($arg)*).and_then(|()| out.flush())
    }};
}

/// `print!` through [`stdout`], as [`outln!`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = $crate::output::stdout();
        write!(out, $($arg)*).and_then(|()| out.flush())
    }};
}
