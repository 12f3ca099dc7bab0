//! The terminal the live view draws on, wrapped so that each frame is one synchronized update
//! (DEC private mode 2026: the terminal shows the frame whole, never half-erased) and the cursor
//! is hidden while the view is up and shown again when it ends, even if orch unwinds.
//!
//! indicatif leaves the cursor at the right edge of the view's last line, where a `^C` echoed
//! by the terminal wraps onto a new line and shifts the next redraw down by one, stranding the
//! view's first line above what follows. So after each frame the cursor is parked at the start
//! of the line below the view, and the next frame clears that line (an echoed `^C` with it)
//! and adds one line to indicatif's first move up. indicatif (whose `MultiProgress` does not
//! move the cursor in place) starts a frame over `n` view lines with `move_cursor_up(n - 1)`
//! and then `n` line clears; over no line, with writes: the first clear says which.
//!
//! Owns those escape sequences only. Terminals without mode 2026 ignore it (it is a DECSET they
//! do not know). It never decides what is drawn: indicatif does, through [`TermLike`].

use std::io;
use std::sync::{Arc, Mutex};

use indicatif::TermLike;

/// Begin a synchronized update.
pub const SYNC_BEGIN: &str = "\x1b[?2026h";
/// End a synchronized update: the terminal shows what came since [`SYNC_BEGIN`].
pub const SYNC_END: &str = "\x1b[?2026l";
/// Hide the cursor.
pub const HIDE_CURSOR: &str = "\x1b[?25l";
/// Show the cursor.
pub const SHOW_CURSOR: &str = "\x1b[?25h";

/// A [`TermLike`] that brackets every frame (the writes up to a flush) in a synchronized update
/// and hides the cursor from the first frame until [`Screen::restore`]. Clones share the state.
#[derive(Clone, Debug)]
pub struct Screen {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    term: Box<dyn TermLike>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_frame: bool,
    cursor_hidden: bool,
    /// The cursor is on the line below the view, moved there after the last frame.
    parked: bool,
    /// The open frame wrote something (not only cleared lines).
    drew: bool,
    /// The frame started parked and has not moved yet: indicatif's moves up so far.
    unparking: Option<usize>,
}

impl Screen {
    pub fn new(term: Box<dyn TermLike>) -> Screen {
        Screen {
            inner: Arc::new(Inner {
                term,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Opens a frame before the first write after a flush.
    fn begin(&self) -> io::Result<()> {
        let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.in_frame {
            self.inner.term.write_str(SYNC_BEGIN)?;
            s.in_frame = true;
            if !s.cursor_hidden {
                self.inner.term.write_str(HIDE_CURSOR)?;
                s.cursor_hidden = true;
            }
            if s.parked {
                // Clear the parking line, and any `^C` on it.
                self.inner.term.write_str("\r\x1b[2K")?;
                s.parked = false;
                s.unparking = Some(0);
            }
            s.drew = false;
        }
        Ok(())
    }

    /// Ends the unparking of a frame: the moves up indicatif asked for, plus the parking line
    /// when a line of the view is to be cleared (there is a view above).
    fn settle(&self, clearing: bool) -> io::Result<()> {
        let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(up) = s.unparking.take() {
            let up = up + usize::from(clearing);
            if up > 0 {
                self.inner.term.move_cursor_up(up)?;
            }
        }
        Ok(())
    }

    /// Opens a frame, noting whether `text` draws anything.
    fn begin_writing(&self, text: &str) -> io::Result<()> {
        self.begin()?;
        self.settle(false)?;
        if text.chars().any(|c| c != '\r') {
            let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            s.drew = true;
        }
        Ok(())
    }

    /// Ends any open frame and shows the cursor again: the view is over.
    pub fn restore(&self) {
        let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.in_frame {
            let _ = self.inner.term.write_str(SYNC_END);
            s.in_frame = false;
        }
        if s.cursor_hidden {
            let _ = self.inner.term.write_str(SHOW_CURSOR);
            s.cursor_hidden = false;
        }
        let _ = self.inner.term.flush();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone (a panic unwinding, or the view dropped without `finish`):
        // never leave the user's terminal without a cursor.
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if s.in_frame {
            let _ = self.term.write_str(SYNC_END);
        }
        if s.cursor_hidden {
            let _ = self.term.write_str(SHOW_CURSOR);
        }
        let _ = self.term.flush();
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        self.inner.term.width()
    }

    fn height(&self) -> u16 {
        self.inner.term.height()
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.begin()?;
        {
            let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(up) = s.unparking.as_mut() {
                *up += n;
                return Ok(());
            }
        }
        self.inner.term.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.begin()?;
        self.settle(false)?;
        self.inner.term.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.begin()?;
        self.settle(false)?;
        self.inner.term.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.begin()?;
        self.settle(false)?;
        self.inner.term.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.begin_writing(s)?;
        self.inner.term.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.begin_writing(s)?;
        self.inner.term.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.begin()?;
        self.settle(true)?;
        self.inner.term.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        self.settle(false)?;
        {
            let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.in_frame {
                if s.drew {
                    // From the right edge of the last line to the start of the next.
                    self.inner.term.write_str("\r\n")?;
                    s.parked = true;
                }
                self.inner.term.write_str(SYNC_END)?;
                s.in_frame = false;
            }
        }
        self.inner.term.flush()
    }
}
