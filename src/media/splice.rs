//! Frames written into a pipe without copying them: `vmsplice` lends the
//! pipe the pages of a frame buffer, and FFmpeg's `read` copies from them
//! directly. A plain `write` copies every byte into pipe pages the kernel
//! allocates and frees per frame; for the overlay's masks, `perf` put that
//! copy and those pages at about a third of what feeding FFmpeg cost.
//!
//! The pipe holds a lent buffer's pages until the reader has taken them,
//! so a buffer may be drawn on again only once the pipe cannot still hold
//! any of it. The writer keeps a ring of buffers long enough for that: a
//! buffer comes back after more than a pipe's worth of later frames has
//! been spliced behind it, and a pipe never holds more than its size.
//! Where `vmsplice` is unavailable the frames are written as usual.
//!
//! The buffers are mappings of their own, not heap memory: dropping the
//! writer unmaps them, and the pages the pipe still holds stay as they
//! were until the reader takes them. Freed heap memory would be handed
//! out again and drawn over while still in the pipe.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::ChildStdin;

/// A ring of frame buffers spliced into one pipe in turn.
pub struct SplicedFrames {
    pipe: ChildStdin,
    buffers: Vec<PageBuffer>,
    next: usize,
    /// `vmsplice` failed as unsupported once: write from now on.
    copy: bool,
}

impl SplicedFrames {
    /// A writer of `frame_bytes`-byte frames into `pipe`.
    pub fn new(pipe: ChildStdin, frame_bytes: usize) -> SplicedFrames {
        let capacity = pipe_capacity(&pipe).unwrap_or(1 << 20);
        let frame = frame_bytes.max(1);
        // A buffer is reused after `ring - 1` later frames: more than a pipe.
        let ring = 2 + capacity.div_ceil(frame);
        SplicedFrames {
            pipe,
            buffers: (0..ring).map(|_| PageBuffer::new(frame_bytes)).collect(),
            next: 0,
            copy: false,
        }
    }

    /// How many buffers turn; a buffer's contents are those it was last
    /// sent with, `ring` frames ago.
    pub fn ring(&self) -> usize {
        self.buffers.len()
    }

    /// The buffer the next frame is drawn into, and its index in the ring.
    pub fn next_buffer(&mut self) -> (usize, &mut [u8]) {
        (self.next, self.buffers[self.next].as_mut_slice())
    }

    /// Sends the buffer [`Self::next_buffer`] gave, whole, and turns the
    /// ring. A broken pipe is returned as such: the reader has stopped.
    pub fn send(&mut self) -> std::io::Result<()> {
        let i = self.next;
        self.next = (i + 1) % self.buffers.len();
        let mut rest: &[u8] = self.buffers[i].as_slice();
        if !self.copy {
            match splice_all(&self.pipe, &mut rest) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                    tracing::debug!("vmsplice unavailable ({e}); writing frames instead");
                    self.copy = true;
                }
                done => return done,
            }
        }
        // What was not spliced, so the stream stays whole either way.
        self.pipe.write_all(rest)
    }
}

/// Zeroed, page-aligned memory mapped for one buffer alone, so that no
/// allocation can be placed on it while the pipe may still hold its pages.
struct PageBuffer {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone, like a `Vec<u8>`.
unsafe impl Send for PageBuffer {}

impl PageBuffer {
    fn new(len: usize) -> PageBuffer {
        if len == 0 {
            return PageBuffer {
                ptr: std::ptr::NonNull::dangling(),
                len,
            };
        }
        // SAFETY: a fresh private anonymous mapping; no memory is passed in.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            ptr != libc::MAP_FAILED,
            "cannot map {len} bytes for a frame buffer: {}",
            std::io::Error::last_os_error()
        );
        PageBuffer {
            ptr: std::ptr::NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable and writable, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, unmapped once. Pages the
            // pipe still references live on until the reader takes them.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn pipe_capacity(_pipe: &ChildStdin) -> Option<usize> {
    None
}

#[cfg(target_os = "linux")]
fn pipe_capacity(pipe: &ChildStdin) -> Option<usize> {
    // SAFETY: F_GETPIPE_SZ on a pipe fd this process owns; no memory is passed.
    let size = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(size).ok().filter(|&s| s > 0)
}

/// Splices all of `data` into `pipe`, blocking while it is full; `data`
/// is left at what was not spliced.
#[cfg(target_os = "linux")]
fn splice_all(pipe: &ChildStdin, data: &mut &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: the iovec points into `data`, alive for the call; the
        // kernel only reads it. Its pages stay in the pipe after the call,
        // which the ring accounts for (see the module's comment).
        let n = unsafe { libc::vmsplice(pipe.as_raw_fd(), &iov, 1, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        *data = &data[n as usize..];
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn splice_all(_pipe: &ChildStdin, _data: &mut &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Child, Command, Stdio};
    use std::thread::JoinHandle;

    /// A reader that starts late (`script` runs `sleep` then `dd`), and a
    /// thread collecting all it reads.
    fn slow_reader(script: &str) -> (Child, ChildStdin, JoinHandle<Vec<u8>>) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            out.read_to_end(&mut all).unwrap();
            all
        });
        let stdin = child.stdin.take().unwrap();
        (child, stdin, reader)
    }

    /// Every frame arrives as it was drawn, although the reader lags and
    /// the buffers are drawn on again while earlier frames are in the pipe.
    #[test]
    fn frames_arrive_intact_through_a_slow_reader() {
        let frame = 200_003;
        let (mut child, stdin, reader) = slow_reader("sleep 0.2; dd bs=65536 status=none");
        let mut frames = SplicedFrames::new(stdin, frame);
        assert!(frames.ring() >= 3);
        let frames_sent = 40u8;
        for k in 0..frames_sent {
            let (_, buf) = frames.next_buffer();
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = k.wrapping_mul(31).wrapping_add(i as u8));
            frames.send().unwrap();
        }
        drop(frames);
        let all = reader.join().unwrap();
        child.wait().unwrap();
        assert_eq!(all.len(), frame * usize::from(frames_sent));
        for (k, got) in all.chunks(frame).enumerate() {
            let k = k as u8;
            let bad = got
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b != k.wrapping_mul(31).wrapping_add(i as u8))
                .count();
            assert_eq!(bad, 0, "frame {k} changed in the pipe");
        }
    }

    /// Frames still in the pipe when the writer is dropped arrive as they
    /// were sent, although this thread allocates and fills memory of the
    /// same size straight after (freed heap buffers would be reused here).
    #[test]
    fn frames_in_the_pipe_survive_the_writer_being_dropped() {
        let frame = 16_000;
        let (mut child, stdin, reader) = slow_reader("sleep 0.3; dd bs=4096 status=none");
        let mut frames = SplicedFrames::new(stdin, frame);
        let ring = frames.ring();
        // Fewer bytes than the smallest pipe, so all is spliced before
        // the reader starts.
        for k in 0..3u8 {
            frames.next_buffer().1.fill(k + 1);
            frames.send().unwrap();
        }
        drop(frames);
        let scribbles: Vec<Vec<u8>> = (0..ring * 2).map(|_| vec![0xee; frame]).collect();
        let all = reader.join().unwrap();
        child.wait().unwrap();
        drop(scribbles);
        assert_eq!(all.len(), frame * 3);
        for (k, got) in all.chunks(frame).enumerate() {
            let bad = got.iter().filter(|&&b| usize::from(b) != k + 1).count();
            assert_eq!(bad, 0, "frame {k} changed in the pipe after the drop");
        }
    }
}
