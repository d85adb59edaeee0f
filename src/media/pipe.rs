//! Raw-frame pipes to and from FFmpeg: a decoder whose stdout carries raw
//! frames (`-f rawvideo`), and an encoder whose stdin takes them. Used by
//! the steps that look at or change every pixel in Rust (`detect`,
//! `frame`); `overlay` enlarges its mask pipe the same way.
//!
//! Both drain FFmpeg's stderr on their own thread (a child never blocks on
//! a full pipe) and keep its last lines for error messages. Blocking.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{Ffmpeg, MediaError};

/// How many stderr lines an error quotes.
const TAIL_LINES: usize = 6;

/// Raw pixel layouts the pipes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 8-bit RGB, 3 bytes a pixel.
    Rgb24,
    /// Planar 8-bit Y, U, V with 2×2 chroma subsampling.
    Yuv420p,
}

impl PixelFormat {
    /// FFmpeg's name for it.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Yuv420p => "yuv420p",
        }
    }

    /// Bytes of one `width`×`height` frame, as FFmpeg's rawvideo lays it out
    /// (chroma planes round odd sizes up).
    pub fn frame_bytes(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::Rgb24 => w * h * 3,
            PixelFormat::Yuv420p => w * h + 2 * w.div_ceil(2) * h.div_ceil(2),
        }
    }
}

/// A child's stderr, drained to the end on a thread; the last lines kept.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    fn start(child: &mut Child) -> StderrTail {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child
            .stderr
            .take()
            .expect("stderr is piped by construction");
        let sink = lines.clone();
        let thread = std::thread::Builder::new()
            .name("ffmpeg-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = line.trim().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    let mut q = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if q.len() == TAIL_LINES {
                        q.pop_front();
                    }
                    q.push_back(line.chars().take(300).collect());
                }
            })
            .ok();
        StderrTail { lines, thread }
    }

    fn finish(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let q = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            "(ffmpeg printed nothing)".into()
        } else {
            Vec::from(q.clone()).join(" | ")
        }
    }
}

fn spawn(ff: &Ffmpeg, args: &[OsString], stdin: Stdio, stdout: Stdio) -> Result<Child, MediaError> {
    let mut cmd = Command::new(ff.path());
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped());
    tracing::debug!(ffmpeg = %ff.path().display(), args = ?args, "spawning ffmpeg pipe");
    cmd.spawn().map_err(|source| MediaError::Spawn {
        path: ff.path().to_path_buf(),
        source,
    })
}

/// Largest pipe buffer asked for: Linux's default `pipe-max-size` (1 MiB).
const PIPE_BYTES: i32 = 1 << 20;

/// Enlarges a pipe's kernel buffer from 64 KiB towards one frame, so a
/// 1080p frame (3 MB) crosses in a few syscalls and wake-ups instead of
/// about fifty. Best effort: where the kernel refuses, the pipe stays as
/// it was.
#[cfg(target_os = "linux")]
pub(crate) fn enlarge_pipe(fd: &impl std::os::fd::AsRawFd, frame_bytes: usize) {
    let want = i32::try_from(frame_bytes)
        .unwrap_or(PIPE_BYTES)
        .min(PIPE_BYTES);
    // SAFETY: F_SETPIPE_SZ on a pipe fd this process owns; no memory is passed.
    let got = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 {
        tracing::debug!("could not enlarge an FFmpeg pipe to {want} bytes");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enlarge_pipe<T>(_fd: &T, _frame_bytes: usize) {}

fn check_exit(
    ff: &Ffmpeg,
    child: &mut Child,
    tail: &mut StderrTail,
    what: &str,
) -> Result<(), MediaError> {
    let status = child.wait().map_err(|source| MediaError::Io {
        path: ff.path().to_path_buf(),
        source,
    })?;
    let stderr = tail.finish();
    if status.success() {
        Ok(())
    } else {
        Err(MediaError::Failed {
            what: what.to_string(),
            status: status
                .code()
                .map_or_else(|| "killed by a signal".into(), |c| c.to_string()),
            stderr,
        })
    }
}

/// FFmpeg decoding to raw frames on its stdout.
pub struct FrameReader {
    ff: Ffmpeg,
    child: Child,
    stdout: Option<ChildStdout>,
    tail: StderrTail,
    frame_bytes: usize,
    what: String,
    finished: bool,
}

impl FrameReader {
    /// Spawns `ffmpeg ARGS`, where `args` must end by writing
    /// `-f rawvideo -pix_fmt FORMAT pipe:1` frames of `width`×`height`.
    pub fn spawn(
        ff: &Ffmpeg,
        args: &[OsString],
        format: PixelFormat,
        width: u32,
        height: u32,
        what: impl Into<String>,
    ) -> Result<FrameReader, MediaError> {
        let mut child = spawn(ff, args, Stdio::null(), Stdio::piped())?;
        let stdout = child.stdout.take();
        let frame_bytes = format.frame_bytes(width, height);
        if let Some(s) = &stdout {
            enlarge_pipe(s, frame_bytes);
        }
        let tail = StderrTail::start(&mut child);
        Ok(FrameReader {
            ff: ff.clone(),
            child,
            stdout,
            tail,
            frame_bytes,
            what: what.into(),
            finished: false,
        })
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Fills `buf` (resized to one frame) with the next frame. `Ok(false)`
    /// at the end of the stream, after checking that FFmpeg succeeded.
    pub fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<bool, MediaError> {
        if self.finished {
            return Ok(false);
        }
        buf.resize(self.frame_bytes, 0);
        let stdout = self
            .stdout
            .as_mut()
            .expect("stdout is piped until finished");
        let mut filled = 0;
        while filled < buf.len() {
            match stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(MediaError::Io {
                        path: PathBuf::from("(ffmpeg stdout)"),
                        source,
                    });
                }
            }
        }
        if filled == buf.len() {
            return Ok(true);
        }
        self.finished = true;
        self.stdout = None;
        check_exit(&self.ff, &mut self.child, &mut self.tail, &self.what)?;
        if filled != 0 {
            return Err(MediaError::Failed {
                what: self.what.clone(),
                status: "0".into(),
                stderr: format!(
                    "the last frame was cut short ({filled} of {} bytes)",
                    self.frame_bytes
                ),
            });
        }
        Ok(false)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// FFmpeg encoding raw frames it reads on its stdin.
pub struct FrameWriter {
    ff: Ffmpeg,
    child: Child,
    stdin: Option<ChildStdin>,
    tail: StderrTail,
    what: String,
    finished: bool,
}

impl FrameWriter {
    /// Spawns `ffmpeg ARGS`, where `args` read
    /// `-f rawvideo -pix_fmt FORMAT -s WxH -framerate R -i pipe:0`.
    pub fn spawn(
        ff: &Ffmpeg,
        args: &[OsString],
        what: impl Into<String>,
    ) -> Result<FrameWriter, MediaError> {
        let mut child = spawn(ff, args, Stdio::piped(), Stdio::null())?;
        let stdin = child.stdin.take();
        if let Some(s) = &stdin {
            enlarge_pipe(s, PIPE_BYTES as usize);
        }
        let tail = StderrTail::start(&mut child);
        Ok(FrameWriter {
            ff: ff.clone(),
            child,
            stdin,
            tail,
            what: what.into(),
            finished: false,
        })
    }

    /// Writes one frame. A broken pipe means FFmpeg died: its error is
    /// reported.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), MediaError> {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        if let Err(e) = stdin.write_all(frame) {
            self.stdin = None;
            self.finished = true;
            check_exit(&self.ff, &mut self.child, &mut self.tail, &self.what)?;
            return Err(MediaError::Io {
                path: PathBuf::from("(ffmpeg stdin)"),
                source: e,
            });
        }
        Ok(())
    }

    /// Closes stdin and waits for FFmpeg to finish the file.
    pub fn finish(mut self) -> Result<(), MediaError> {
        self.stdin = None;
        self.finished = true;
        check_exit(&self.ff, &mut self.child, &mut self.tail, &self.what)
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes() {
        assert_eq!(PixelFormat::Rgb24.frame_bytes(4, 2), 24);
        assert_eq!(PixelFormat::Yuv420p.frame_bytes(4, 2), 8 + 2 * 2);
        assert_eq!(PixelFormat::Yuv420p.frame_bytes(3, 3), 9 + 2 * 4);
        assert_eq!(
            PixelFormat::Yuv420p.frame_bytes(1920, 1080),
            1920 * 1080 * 3 / 2
        );
    }
}
