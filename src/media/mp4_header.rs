//! The probe's fast path: what [`super::probe`] needs, read from an MP4 or
//! MOV file's `moov` box, without starting FFmpeg. Starting it to print a
//! header costs about 30 ms, a share of every short step.
//!
//! Only files whose figures follow from the header alone take this path:
//! not fragmented, a movie duration, a constant frame rate (one `stts`
//! entry), and codecs named here. Anything else returns `None` and is
//! probed by FFmpeg. The figures are produced as FFmpeg prints them and
//! ffmpeg-sidecar parses them, so both paths agree exactly; the tests hold
//! them to that on files FFmpeg makes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::filter::{fps_rational, gcd};
use super::info::{AudioInfo, MediaInfo, VideoInfo};

/// Largest `moov` read into memory; a bigger one goes to FFmpeg.
const MAX_MOOV: u64 = 64 << 20;

/// Reads `path`'s header, or `None` where FFmpeg must probe it.
pub(super) fn read(path: &Path) -> Option<MediaInfo> {
    let moov = find_moov(&mut File::open(path).ok()?)?;
    let movie = parse_moov(&moov)?;
    let duration = printed_duration(movie.duration, movie.timescale)?;
    let mut video = None;
    let mut audio = None;
    for track in movie.tracks {
        match track {
            Track::Video(v) if video.is_none() => video = Some(v),
            Track::Audio(a) if audio.is_none() => audio = Some(a),
            Track::Unknown => return None,
            _ => {}
        }
    }
    Some(MediaInfo {
        duration,
        video,
        audio,
    })
}

/// The `moov` box's body, found by walking the top-level boxes (it may
/// follow `mdat`). A fragmented file (`moof`) is left to FFmpeg.
fn find_moov(file: &mut File) -> Option<Vec<u8>> {
    let len = file.metadata().ok()?.len();
    let mut pos = 0u64;
    let mut first = true;
    while pos + 8 <= len {
        file.seek(SeekFrom::Start(pos)).ok()?;
        let mut head = [0u8; 16];
        file.read_exact(&mut head[..8]).ok()?;
        let kind: [u8; 4] = head[4..8].try_into().ok()?;
        let (header, size) = match u32::from_be_bytes(head[..4].try_into().ok()?) {
            0 => (8, len - pos),
            1 => {
                file.read_exact(&mut head[8..16]).ok()?;
                (16, u64::from_be_bytes(head[8..16].try_into().ok()?))
            }
            n => (8, u64::from(n)),
        };
        if size < header || pos.checked_add(size)? > len {
            return None;
        }
        if first
            && !matches!(
                &kind,
                b"ftyp" | b"moov" | b"free" | b"skip" | b"wide" | b"mdat"
            )
        {
            return None;
        }
        first = false;
        match &kind {
            b"moof" => return None,
            b"moov" if size - header <= MAX_MOOV => {
                let mut body = vec![0u8; usize::try_from(size - header).ok()?];
                file.read_exact(&mut body).ok()?;
                return Some(body);
            }
            b"moov" => return None,
            _ => pos += size,
        }
    }
    None
}

struct Movie {
    timescale: u32,
    duration: u64,
    tracks: Vec<Track>,
}

enum Track {
    Video(VideoInfo),
    Audio(AudioInfo),
    /// Neither sound nor picture (text, timecode): FFmpeg ignores it too.
    Other,
    /// Sound or picture this reader cannot describe as FFmpeg would.
    Unknown,
}

fn parse_moov(moov: &[u8]) -> Option<Movie> {
    let mut movie = None;
    let mut tracks = Vec::new();
    for (kind, body) in boxes(moov) {
        match kind {
            b"mvhd" => movie = Some(parse_mvhd(body)?),
            b"trak" => tracks.push(parse_trak(body)?),
            b"mvex" => return None,
            _ => {}
        }
    }
    let (timescale, duration) = movie?;
    Some(Movie {
        timescale,
        duration,
        tracks,
    })
}

/// The movie's time scale and duration; FFmpeg takes the file's duration
/// from here for an unfragmented file.
fn parse_mvhd(b: &[u8]) -> Option<(u32, u64)> {
    match *b.first()? {
        0 => Some((be32(b, 12)?, u64::from(be32(b, 16)?))),
        1 => Some((be32(b, 20)?, be64(b, 24)?)),
        _ => None,
    }
}

fn parse_trak(trak: &[u8]) -> Option<Track> {
    let mdia = child(trak, b"mdia")?;
    let handler = child(mdia, b"hdlr").and_then(|h| h.get(8..12))?;
    let stbl = child(child(mdia, b"minf")?, b"stbl")?;
    let entry = first_sample_entry(child(stbl, b"stsd")?)?;
    Some(match handler {
        b"vide" => video_track(mdia, stbl, entry).map_or(Track::Unknown, Track::Video),
        b"soun" => audio_track(entry).map_or(Track::Unknown, Track::Audio),
        _ => Track::Other,
    })
}

/// A picture track at a constant rate: one `stts` entry, so FFmpeg's
/// average frame rate is the media time scale over that one duration.
fn video_track(mdia: &[u8], stbl: &[u8], entry: &[u8]) -> Option<VideoInfo> {
    let codec = match entry.get(4..8)? {
        b"avc1" | b"avc3" => "h264",
        b"hvc1" | b"hev1" => "hevc",
        b"av01" => "av1",
        b"vp09" => "vp9",
        _ => return None,
    };
    let (width, height) = (be16(entry, 32)?, be16(entry, 34)?);
    let stts = child(stbl, b"stts")?;
    if be32(stts, 4)? != 1 {
        return None;
    }
    let (count, delta) = (be32(stts, 8)?, be32(stts, 12)?);
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = match *mdhd.first()? {
        0 => be32(mdhd, 12)?,
        1 => be32(mdhd, 20)?,
        _ => return None,
    };
    if width == 0 || height == 0 || count == 0 || delta == 0 || timescale == 0 {
        return None;
    }
    let fps = printed_fps(f64::from(timescale) / f64::from(delta))?;
    Some(VideoInfo {
        width: u32::from(width),
        height: u32::from(height),
        fps,
        codec: codec.into(),
        constant_rate: is_exact_rate(timescale, delta, fps),
    })
}

/// Whether `timescale / delta` is exactly the rational FFmpeg is given for
/// `fps` ([`fps_rational`]); 2997/100 prints as 29.97 but is not 30000/1001.
fn is_exact_rate(timescale: u32, delta: u32, fps: f64) -> bool {
    let (n, d) = (u64::from(timescale), u64::from(delta));
    let g = gcd(n, d);
    (n / g, d / g) == fps_rational(fps)
}

/// A sound track as FFmpeg's decoder reports it. The sample entry's rate
/// and channel count stand, except that AAC's own configuration must
/// agree with them (it does not for HE-AAC, whose decoder doubles the
/// rate).
fn audio_track(entry: &[u8]) -> Option<AudioInfo> {
    if be16(entry, 16)? > 1 {
        return None;
    }
    let channels = u32::from(be16(entry, 24)?);
    let rate = be32(entry, 32)? >> 16;
    let codec = audio_codec(entry)?;
    if codec == "aac" && aac_config(entry)? != (rate, channels) {
        return None;
    }
    if channels == 0 || rate == 0 {
        return None;
    }
    Some(AudioInfo {
        rate,
        channels,
        codec: codec.into(),
    })
}

/// FFmpeg's name for a sound sample entry's codec.
fn audio_codec(entry: &[u8]) -> Option<&'static str> {
    Some(match entry.get(4..8)? {
        b"mp4a" => match decoder_config(entry)?.first()? {
            0x40 | 0x66..=0x68 => "aac",
            0x69 | 0x6b => "mp3",
            _ => return None,
        },
        b"ac-3" => "ac3",
        b"ec-3" => "eac3",
        b"Opus" => "opus",
        b"fLaC" => "flac",
        b"alac" => "alac",
        _ => return None,
    })
}

/// Rate and channels from plain AAC's AudioSpecificConfig; `None` for
/// the profiles with SBR or PS, and for layouts beyond 5.1.
fn aac_config(entry: &[u8]) -> Option<(u32, u32)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let config = decoder_config(entry)?;
    // After the object type, stream type, buffer size and two bit rates.
    let asc = descriptor(config.get(13..)?, 5)?;
    let bits = u16::from_be_bytes([*asc.first()?, *asc.get(1)?]);
    let object = bits >> 11;
    let rate = *RATES.get(usize::from((bits >> 7) & 0xf))?;
    let channels = u32::from((bits >> 3) & 0xf);
    // Low rates may carry implicit SBR, which the decoder doubles.
    (matches!(object, 1..=4) && (1..=6).contains(&channels) && rate >= 32000)
        .then_some((rate, channels))
}

/// The DecoderConfigDescriptor in an `mp4a` entry's `esds` (directly, or
/// in a QuickTime `wave` box); its first byte is the object type, which
/// says AAC or MP3.
fn decoder_config(entry: &[u8]) -> Option<&[u8]> {
    // QuickTime's version 1 sound description adds 16 bytes of fields
    // before the children (`audio_track` takes no later version).
    let children = match be16(entry, 16)? {
        0 => 36,
        1 => 52,
        _ => return None,
    };
    let inner = entry.get(children..)?;
    let esds = child(inner, b"esds").or_else(|| child(child(inner, b"wave")?, b"esds"))?;
    let mut d = esds.get(4..)?;
    // ES_Descriptor (tag 3), then its DecoderConfigDescriptor (tag 4).
    d = descriptor(d, 3)?;
    let flags = *d.get(2)?;
    let mut skip = 3;
    if flags & 0x80 != 0 {
        skip += 2;
    }
    if flags & 0x40 != 0 {
        skip += 1 + usize::from(*d.get(skip)?);
    }
    if flags & 0x20 != 0 {
        skip += 2;
    }
    descriptor(d.get(skip..)?, 4)
}

/// The body of the descriptor with `tag` at the start of `d`.
fn descriptor(d: &[u8], tag: u8) -> Option<&[u8]> {
    if *d.first()? != tag {
        return None;
    }
    let mut len = 0usize;
    for i in 1..=4 {
        let b = *d.get(i)?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return d.get(i + 1..i + 1 + len);
        }
    }
    None
}

/// The first entry of an `stsd` box, its size and type included.
fn first_sample_entry(stsd: &[u8]) -> Option<&[u8]> {
    if be32(stsd, 4)? == 0 {
        return None;
    }
    let size = usize::try_from(be32(stsd, 8)?).ok()?;
    stsd.get(8..8usize.checked_add(size)?)
}

/// The duration as `ffmpeg -i` prints it (to the hundredth, from
/// microseconds) and ffmpeg-sidecar reads it back.
fn printed_duration(duration: u64, timescale: u32) -> Option<f64> {
    if timescale == 0 || duration == 0 || duration == u64::from(u32::MAX) || duration == u64::MAX {
        return None;
    }
    let ts = u128::from(timescale);
    let micros = (u128::from(duration) * 1_000_000 + ts / 2) / ts + 5_000;
    let secs = micros / 1_000_000;
    let hundredths = (micros % 1_000_000) / 10_000;
    let text = format!(
        "{:02}:{:02}:{:02}.{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        hundredths
    );
    ffmpeg_sidecar::log_parser::parse_time_str(&text)
}

/// A frame rate as `ffmpeg -i` prints it ("30", "29.97") and
/// ffmpeg-sidecar reads it back (as `f32`).
fn printed_fps(rate: f64) -> Option<f64> {
    // FFmpeg rounds rate × 100 through a float to choose the form.
    let v = ((rate * 100.0) as f32).round_ties_even() as u64;
    let text = if v == 0 {
        format!("{rate:.4}")
    } else if !v.is_multiple_of(100) {
        format!("{rate:.2}")
    } else if !v.is_multiple_of(100_000) {
        format!("{rate:.0}")
    } else {
        return None;
    };
    text.parse::<f32>().ok().map(f64::from)
}

/// The child boxes of a box body: (type, body).
fn boxes(mut b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let size = usize::try_from(be32(b, 0)?).ok()?;
        let (header, size) = match size {
            0 => (8, b.len()),
            1 => (16, usize::try_from(be64(b, 8)?).ok()?),
            n => (8, n),
        };
        if size < header || size > b.len() {
            return None;
        }
        let item = (&b[4..8], &b[header..size]);
        b = &b[size..];
        Some(item)
    })
}

fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(b).find(|(k, _)| *k == kind).map(|(_, body)| body)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_print_as_ffmpeg_prints_them() {
        // 10.016 s rounds to 10.02 (FFmpeg adds half a hundredth).
        assert_eq!(printed_duration(10_016, 1000), Some(10.02));
        assert_eq!(printed_duration(153_600, 15_360), Some(10.0));
        assert_eq!(printed_duration(0, 1000), None);
        assert_eq!(printed_fps(30.0), Some(30.0));
        assert_eq!(printed_fps(30_000.0 / 1001.0), Some(f64::from(29.97f32)));
        assert_eq!(printed_fps(12.5), Some(12.5));
    }

    #[test]
    fn only_the_exact_rational_is_a_constant_rate() {
        let fps = |t: u32, d: u32| printed_fps(f64::from(t) / f64::from(d)).unwrap();
        assert!(is_exact_rate(15_360, 512, fps(15_360, 512)));
        assert!(is_exact_rate(30_000, 1001, fps(30_000, 1001)));
        assert!(is_exact_rate(12_800, 1024, fps(12_800, 1024)));
        // Prints as 29.97, but drifts from 30000/1001 by a frame in 9 hours.
        assert!(!is_exact_rate(2997, 100, fps(2997, 100)));
    }
}
