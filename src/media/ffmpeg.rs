//! The one FFmpeg wrapper. Built on `ffmpeg-sidecar` (command set-up and the
//! stderr log parser); the draining, progress, cancellation and error
//! reporting are ours.
//!
//! Blocking: async callers use `tokio::task::spawn_blocking`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::log_parser::{FfmpegLogParser, parse_time_str};
use tokio_util::sync::CancellationToken;

use super::{MediaError, path_arg};

/// How many stderr lines an error message quotes.
const TAIL_LINES: usize = 6;
/// How often a run looks at its cancellation token while FFmpeg is quiet.
const POLL: Duration = Duration::from_millis(50);

/// A located FFmpeg binary. Cheap to clone; every call spawns a fresh child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ffmpeg {
    path: PathBuf,
}

/// One progress report parsed from FFmpeg's stats line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Seconds of output written so far.
    pub out_time: f64,
    /// Video frames written so far.
    pub frame: u64,
    /// `out_time` over the expected duration, in 0..=1, when that is known.
    pub fraction: Option<f64>,
}

/// What a run left behind, beyond its output file.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    /// The last progress report (FFmpeg prints a final one at the end).
    pub last: Option<Progress>,
    /// Every event, when asked for (probing).
    pub events: Vec<FfmpegEvent>,
}

impl Ffmpeg {
    /// Finds FFmpeg: `REELAY_FFMPEG`, else `.tools/bin/ffmpeg` in the nearest
    /// ancestor of the current directory or of the executable's directory,
    /// else `ffmpeg` on `PATH`. The one chosen must be an executable file.
    /// It is not run here: starting FFmpeg costs tens of milliseconds, a
    /// share of every short step; one that cannot start fails its first
    /// run with [`MediaError::Spawn`], and `reelay doctor` runs it.
    pub fn locate() -> Result<Ffmpeg, MediaError> {
        let var = crate::config::env::FFMPEG;
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let ff = Ffmpeg::at(&value);
            // A bare name is looked up on `PATH`, as `Command` would.
            let bare = Path::new(&value).components().count() == 1;
            if bare && let Some(found) = value.to_str().and_then(on_path) {
                return Ok(Ffmpeg::at(found));
            }
            return if ff.executable() {
                Ok(ff)
            } else {
                Err(MediaError::NotFound {
                    tried: format!("{var}={} is not an executable file", ff.path.display()),
                })
            };
        }
        let mut tried = Vec::new();
        if let Some(local) = super::find_tool("bin/ffmpeg") {
            let ff = Ffmpeg::at(&local);
            if ff.executable() {
                return Ok(ff);
            }
            tried.push(format!("{} is not an executable file", local.display()));
        } else {
            tried.push("no .tools/bin/ffmpeg above the current or executable directory".into());
        }
        if let Some(ff) = on_path("ffmpeg").map(Ffmpeg::at) {
            return Ok(ff);
        }
        tried.push("no ffmpeg on PATH".into());
        Err(MediaError::NotFound {
            tried: tried.join("; "),
        })
    }

    /// Uses the binary at `path` as is (no check).
    pub fn at(path: impl Into<PathBuf>) -> Ffmpeg {
        Ffmpeg { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path names an executable file.
    fn executable(&self) -> bool {
        is_executable(&self.path)
    }

    /// Runs FFmpeg with `args` (a vector, never a shell string), blocking
    /// until it exits. Adds `-hide_banner -nostdin -y` and a parseable log
    /// level in front. Always drains stderr, reports progress (with a
    /// fraction when `expected_duration` is given), and kills the child as
    /// soon as `cancel` fires. On failure the error quotes FFmpeg's last
    /// error lines.
    pub fn run(
        &self,
        args: &[OsString],
        expected_duration: Option<f64>,
        on_progress: &mut dyn FnMut(Progress),
        cancel: &CancellationToken,
    ) -> Result<(), MediaError> {
        self.run_logged(
            args,
            expected_duration,
            on_progress,
            cancel,
            false,
            "running ffmpeg",
        )
        .map(|_| ())
    }

    /// [`Ffmpeg::run`] that also hands back the last progress report and,
    /// with `keep_events`, every parsed stderr event. `what` describes the
    /// job for error messages ("extracting `a.mp4`").
    pub(crate) fn run_logged(
        &self,
        args: &[OsString],
        expected_duration: Option<f64>,
        on_progress: &mut dyn FnMut(Progress),
        cancel: &CancellationToken,
        keep_events: bool,
        what: &str,
    ) -> Result<RunLog, MediaError> {
        let (status, log, tail) = self.spawn_and_drain(
            args,
            expected_duration,
            on_progress,
            cancel,
            keep_events,
            what,
        )?;
        if status.success() {
            Ok(log)
        } else {
            Err(MediaError::Failed {
                what: what.to_string(),
                status: status
                    .code()
                    .map_or_else(|| "killed by a signal".into(), |c| c.to_string()),
                stderr: tail,
            })
        }
    }

    /// Spawns, drains and waits; returns the exit status whatever it is,
    /// the log, and the stderr tail for messages.
    pub(crate) fn spawn_and_drain(
        &self,
        args: &[OsString],
        expected_duration: Option<f64>,
        on_progress: &mut dyn FnMut(Progress),
        cancel: &CancellationToken,
        keep_events: bool,
        what: &str,
    ) -> Result<(std::process::ExitStatus, RunLog, String), MediaError> {
        if cancel.is_cancelled() {
            return Err(MediaError::Cancelled { what: what.into() });
        }
        // `new_with_path` adds `-loglevel level+info`, which the parser needs.
        let mut command = FfmpegCommand::new_with_path(&self.path);
        command.hide_banner().args(["-nostdin", "-y"]).args(args);
        // Spawned as a plain `Command` so that stdin and stdout are closed:
        // nothing can block on a pipe nobody reads.
        let mut command = Command::from(command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tracing::debug!(ffmpeg = %self.path.display(), args = ?args, "spawning ffmpeg");
        let mut child = command.spawn().map_err(|source| MediaError::Spawn {
            path: self.path.clone(),
            source,
        })?;
        let stderr = child
            .stderr
            .take()
            .expect("stderr is piped by construction");

        let (drain, rx) = drain_stderr(stderr).map_err(|source| MediaError::Io {
            path: self.path.clone(),
            source,
        })?;

        let mut seen = Seen::default();
        let mut cancelled = false;
        loop {
            if cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            match rx.recv_timeout(POLL) {
                Ok(event) => seen.take(event, expected_duration, on_progress, keep_events),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }

        if cancelled {
            let _ = child.kill();
            let _ = child.wait();
            // stderr closes with the child, so the drain thread ends.
            let _ = drain.join();
            return Err(MediaError::Cancelled { what: what.into() });
        }
        let status = child.wait().map_err(|source| MediaError::Io {
            path: self.path.clone(),
            source,
        })?;
        let _ = drain.join();
        let tail = seen.tail();
        Ok((status, seen.log, tail))
    }

    /// Decodes the first video stream of `path` fully and counts its frames.
    pub fn count_frames(&self, path: &Path) -> Result<u64, MediaError> {
        let args = os_args([
            OsStr::new("-i"),
            &path_arg(path),
            OsStr::new("-map"),
            OsStr::new("0:v:0"),
            OsStr::new("-fps_mode"),
            OsStr::new("passthrough"),
            OsStr::new("-f"),
            OsStr::new("null"),
            OsStr::new("-"),
        ]);
        let what = format!("counting the frames of `{}`", path.display());
        let log = self.run_logged(
            &args,
            None,
            &mut |_| {},
            &CancellationToken::new(),
            false,
            &what,
        )?;
        Ok(log.last.map_or(0, |p| p.frame))
    }
}

/// Which of FFmpeg's standard streams a piped run connects to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// The caller writes FFmpeg's input (`-i pipe:0`) into [`PipedFfmpeg::stdin`].
    Stdin,
    /// The caller reads FFmpeg's output (`pipe:1`) from [`PipedFfmpeg::stdout`].
    Stdout,
}

/// What a piped run's stderr drain saw.
#[derive(Debug, Default)]
struct Drained {
    last: Option<Progress>,
    tail: String,
}

/// An FFmpeg child with stdin or stdout connected to the caller and stderr
/// always drained on its own thread (so FFmpeg never blocks on it). Dropping
/// it unfinished kills the child.
pub struct PipedFfmpeg {
    child: std::process::Child,
    /// FFmpeg's stdin, for [`Pipe::Stdin`]: take it, write, drop it to end
    /// the input.
    pub stdin: Option<std::process::ChildStdin>,
    /// FFmpeg's stdout, for [`Pipe::Stdout`]: take it and read to the end.
    pub stdout: Option<std::process::ChildStdout>,
    drain: Option<std::thread::JoinHandle<Drained>>,
    path: PathBuf,
    what: String,
    done: bool,
}

impl std::fmt::Debug for PipedFfmpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedFfmpeg")
            .field("pid", &self.child.id())
            .field("what", &self.what)
            .finish()
    }
}

impl Ffmpeg {
    /// Spawns FFmpeg with `args` (a vector, never a shell string) and one
    /// pipe connected; `-hide_banner -nostdin -y` and a parseable log level
    /// go in front, as for [`Ffmpeg::run`]. The other standard stream is
    /// closed and stderr is drained to the end on a thread, keeping the
    /// last progress report and the last error lines for
    /// [`PipedFfmpeg::finish`]. `what` describes the job for messages.
    pub fn spawn_piped(
        &self,
        args: &[OsString],
        pipe: Pipe,
        what: &str,
    ) -> Result<PipedFfmpeg, MediaError> {
        let mut command = FfmpegCommand::new_with_path(&self.path);
        command.hide_banner().args(["-nostdin", "-y"]).args(args);
        let mut command = Command::from(command);
        command
            .stdin(match pipe {
                Pipe::Stdin => Stdio::piped(),
                Pipe::Stdout => Stdio::null(),
            })
            .stdout(match pipe {
                Pipe::Stdout => Stdio::piped(),
                Pipe::Stdin => Stdio::null(),
            })
            .stderr(Stdio::piped());
        tracing::debug!(ffmpeg = %self.path.display(), args = ?args, "spawning piped ffmpeg");
        let mut child = command.spawn().map_err(|source| MediaError::Spawn {
            path: self.path.clone(),
            source,
        })?;
        let stderr = child
            .stderr
            .take()
            .expect("stderr is piped by construction");
        let drain = std::thread::Builder::new()
            .name("ffmpeg-stderr".into())
            .spawn(move || {
                let mut parser = FfmpegLogParser::new(BufReader::new(stderr));
                let mut out = Drained::default();
                let mut errors: VecDeque<String> = VecDeque::new();
                let mut lines: VecDeque<String> = VecDeque::new();
                loop {
                    match parser.parse_next_event() {
                        Ok(FfmpegEvent::LogEOF) => break,
                        Ok(FfmpegEvent::Progress(p)) => {
                            out.last = Some(Progress {
                                out_time: parse_time_str(&p.time).unwrap_or(0.0).max(0.0),
                                frame: u64::from(p.frame),
                                fraction: None,
                            });
                        }
                        Ok(FfmpegEvent::Log(level, line)) => {
                            let line = clean_line(&line);
                            if !line.is_empty() {
                                if matches!(level, LogLevel::Error | LogLevel::Fatal) {
                                    push_bounded(&mut errors, line.clone());
                                }
                                push_bounded(&mut lines, line);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => push_bounded(&mut lines, e.to_string()),
                    }
                }
                let tail = if errors.is_empty() { lines } else { errors };
                out.tail = if tail.is_empty() {
                    "(ffmpeg printed nothing)".to_string()
                } else {
                    Vec::from(tail).join(" | ")
                };
                out
            });
        let drain = match drain {
            Ok(d) => d,
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(MediaError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        Ok(PipedFfmpeg {
            child,
            stdin,
            stdout,
            drain: Some(drain),
            path: self.path.clone(),
            what: what.to_string(),
            done: false,
        })
    }
}

impl PipedFfmpeg {
    /// Kills the child (idempotent) and reaps it.
    pub fn kill(&mut self) {
        if !self.done {
            self.stdin = None;
            self.stdout = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(d) = self.drain.take() {
                let _ = d.join();
            }
            self.done = true;
        }
    }

    /// Closes the caller's end of the pipe, waits for FFmpeg to exit and
    /// returns its last progress report; a failure quotes its last error
    /// lines.
    pub fn finish(mut self) -> Result<Option<Progress>, MediaError> {
        self.stdin = None;
        self.stdout = None;
        let status = self.child.wait().map_err(|source| MediaError::Io {
            path: self.path.clone(),
            source,
        });
        let drained = self
            .drain
            .take()
            .and_then(|d| d.join().ok())
            .unwrap_or_default();
        self.done = true;
        let status = status?;
        if status.success() {
            Ok(drained.last)
        } else {
            Err(MediaError::Failed {
                what: self.what.clone(),
                status: status
                    .code()
                    .map_or_else(|| "killed by a signal".into(), |c| c.to_string()),
                stderr: drained.tail,
            })
        }
    }
}

impl Drop for PipedFfmpeg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds an argument vector from anything string-like.
pub(crate) fn os_args<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items
        .into_iter()
        .map(|s| s.as_ref().to_os_string())
        .collect()
}

/// Drains FFmpeg's stderr on its own thread, always to the end, into an
/// unbounded channel: FFmpeg never blocks on a full pipe, whatever the
/// caller does with the events.
fn drain_stderr(
    stderr: std::process::ChildStderr,
) -> std::io::Result<(std::thread::JoinHandle<()>, mpsc::Receiver<FfmpegEvent>)> {
    let (tx, rx) = mpsc::channel::<FfmpegEvent>();
    let drain = std::thread::Builder::new()
        .name("ffmpeg-stderr".into())
        .spawn(move || {
            let mut parser = FfmpegLogParser::new(BufReader::new(stderr));
            loop {
                match parser.parse_next_event() {
                    Ok(FfmpegEvent::LogEOF) => break,
                    Ok(event) => {
                        // The receiver may be gone after a cancel; keep
                        // reading so the child never blocks on stderr.
                        let _ = tx.send(event);
                    }
                    // A line the parser did not understand; it is
                    // consumed, so go on with the next one.
                    Err(e) => {
                        let _ = tx.send(FfmpegEvent::Log(LogLevel::Unknown, e.to_string()));
                    }
                }
            }
        })?;
    Ok((drain, rx))
}

/// What a run's stderr said: its progress and events, and its last lines
/// (the error lines apart) for the message when it fails.
#[derive(Default)]
struct Seen {
    log: RunLog,
    errors: VecDeque<String>,
    lines: VecDeque<String>,
}

impl Seen {
    fn take(
        &mut self,
        event: FfmpegEvent,
        expected_duration: Option<f64>,
        on_progress: &mut dyn FnMut(Progress),
        keep_events: bool,
    ) {
        match &event {
            FfmpegEvent::Progress(p) => {
                let out_time = parse_time_str(&p.time).unwrap_or(0.0).max(0.0);
                let progress = Progress {
                    out_time,
                    frame: u64::from(p.frame),
                    fraction: expected_duration
                        .filter(|d| *d > 0.0)
                        .map(|d| (out_time / d).clamp(0.0, 1.0)),
                };
                self.log.last = Some(progress);
                on_progress(progress);
            }
            FfmpegEvent::Log(level, line) => {
                let line = clean_line(line);
                if !line.is_empty() {
                    if matches!(level, LogLevel::Error | LogLevel::Fatal) {
                        push_bounded(&mut self.errors, line.clone());
                    }
                    push_bounded(&mut self.lines, line);
                }
            }
            _ => {}
        }
        if keep_events {
            self.log.events.push(event);
        }
    }

    /// The error lines, else the last lines, joined.
    fn tail(&self) -> String {
        let tail = if self.errors.is_empty() {
            &self.lines
        } else {
            &self.errors
        };
        if tail.is_empty() {
            "(ffmpeg printed nothing)".to_string()
        } else {
            Vec::from(tail.clone()).join(" | ")
        }
    }
}

fn push_bounded(q: &mut VecDeque<String>, line: String) {
    if q.len() == TAIL_LINES {
        q.pop_front();
    }
    q.push_back(line);
}

/// A stderr line without the `[info]`/`[error]` level tag and the
/// `[tag @ 0x…]` context, which mean nothing to a reader.
fn clean_line(line: &str) -> String {
    let mut s = line.trim();
    while let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else { break };
        s = rest[end + 1..].trim_start();
    }
    s.chars().take(300).collect()
}

/// The first executable `name` in the directories of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a file with an execute bit counts; FFmpeg is not started.
    #[cfg(unix)]
    #[test]
    fn an_executable_file_is_found_without_running_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("ffmpeg");
        // Would fail if run: `locate` must not run it.
        std::fs::write(&tool, "#!/bin/sh\nexit 1\n").unwrap();
        assert!(!is_executable(&tool), "no execute bit yet");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(is_executable(&tool));
        assert!(!is_executable(dir.path()), "a directory is not a tool");
        assert!(!is_executable(&dir.path().join("missing")));
        assert!(on_path("sh").is_some_and(|p| p.is_absolute() || p.components().count() > 1));
        assert!(on_path("no-such-tool-reelay").is_none());
    }

    #[test]
    fn clean_line_strips_tags() {
        assert_eq!(
            clean_line("[in#0 @ 0x55] [error] Error opening input: Invalid data"),
            "Error opening input: Invalid data"
        );
        assert_eq!(clean_line("plain"), "plain");
    }

    #[test]
    fn piped_missing_binary_is_a_spawn_error() {
        let err = Ffmpeg::at("/nonexistent/ffmpeg")
            .spawn_piped(&[], Pipe::Stdout, "testing")
            .unwrap_err();
        assert!(matches!(err, MediaError::Spawn { .. }), "{err}");
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let ff = Ffmpeg::at("/nonexistent/ffmpeg");
        let err = ff
            .run(&[], None, &mut |_| {}, &CancellationToken::new())
            .unwrap_err();
        assert!(matches!(err, MediaError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("REELAY_FFMPEG"));
    }
}
