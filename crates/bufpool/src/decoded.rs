//! The demo's frames when bufpool is built with the `avframe` feature: a clip decoded with
//! FFmpeg straight into the shared pool (a test clip is encoded in-process when no input is
//! given), published to the consumers' ports without a copy.

use std::error::Error;
use std::path::{Path, PathBuf};

use allocator_facade::avframe::{
    ClipCodec, DecoderOptions, PoolDecoder, StreamInfo, pattern, write_clip,
};
use buffer_core::{BufferPool, Port};

/// Size and length of the test clip made when no input is given: small enough to encode in a
/// few seconds, lossless (FFV1) so consumers can check every sample they read.
const CLIP_WIDTH: u32 = 1280;
const CLIP_HEIGHT: u32 = 720;
const CLIP_FRAMES: u64 = 240;

/// A clip being decoded into the pool.
pub struct Clip {
    decoder: Option<PoolDecoder>,
    path: PathBuf,
    /// Whether it is our own test clip (whose samples consumers can check).
    pub synthetic: bool,
    /// What the stream needs from the pool.
    pub info: StreamInfo,
    /// How many frames it has, when known (the test clip).
    pub frames: Option<u64>,
}

impl Clip {
    /// Probes `input`, or encodes a test clip of at most `frames` frames when there is none.
    pub fn prepare(input: Option<&Path>, frames: u64) -> Result<Clip, Box<dyn Error>> {
        let clip_frames = frames.min(CLIP_FRAMES);
        let (path, synthetic) = match input {
            Some(path) => (path.to_owned(), false),
            None => {
                let path =
                    std::env::temp_dir().join(format!("bufpool-demo-{}.mkv", std::process::id()));
                write_clip(&path, ClipCodec::Ffv1, CLIP_WIDTH, CLIP_HEIGHT, clip_frames)?;
                (path, true)
            }
        };
        let info = PoolDecoder::probe(&path)?;
        if !info.direct_rendering {
            return Err(format!(
                "{} uses a decoder without direct rendering: its frames cannot be decoded into shared memory (wrapping them works only within one process)",
                path.display()
            )
            .into());
        }
        Ok(Clip {
            decoder: None,
            path,
            synthetic,
            info,
            frames: synthetic.then_some(clip_frames),
        })
    }

    /// Decodes the next frame into `pool` and publishes it to `targets`; `false` at the end.
    pub fn publish_next(
        &mut self,
        pool: &BufferPool,
        targets: &[Port],
    ) -> Result<bool, Box<dyn Error>> {
        if self.decoder.is_none() {
            self.decoder = Some(PoolDecoder::open(
                &self.path,
                pool,
                DecoderOptions::default(),
            )?);
        }
        let decoder = self.decoder.as_mut().expect("opened above");
        let Some(frame) = decoder.next_frame()? else {
            return Ok(false);
        };
        frame
            .publish(pool, targets)
            .ok_or("a decoded frame was not in the pool")?;
        Ok(true)
    }

    /// A description for the demo's first line.
    pub fn describe(&self) -> String {
        format!(
            "{}x{} frames decoded by FFmpeg from {} ({}) straight into",
            self.info.width,
            self.info.height,
            self.path.display(),
            if self.synthetic {
                "an FFV1 test clip made in-process"
            } else {
                "the input"
            }
        )
    }
}

impl Drop for Clip {
    fn drop(&mut self) {
        self.decoder = None;
        if self.synthetic {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A consumer's check of a decoded test-clip frame: samples of every plane against the clip's
/// pattern. `true` when all match.
pub fn check_planes(frame: &buffer_core::PortGuard<'_>, sequence: u64) -> bool {
    (0..3).all(|plane| {
        let Some((bytes, stride, rows)) = plane_bytes(frame, plane) else {
            return false;
        };
        let width = if plane == 0 {
            CLIP_WIDTH
        } else {
            CLIP_WIDTH / 2
        } as usize;
        (0..rows).step_by(rows.max(8) / 8).all(|y| {
            (0..width)
                .step_by(width / 8)
                .all(|x| bytes[y * stride + x] == pattern(plane, x, y, sequence))
        })
    })
}

/// Plane `plane` of a received frame: its bytes, line size and rows.
fn plane_bytes<'a>(
    frame: &'a buffer_core::PortGuard<'_>,
    plane: usize,
) -> Option<(&'a [u8], usize, usize)> {
    let described = *frame.meta().video.planes().get(plane)?;
    Some((
        frame.plane(plane).ok()?,
        described.stride as usize,
        described.rows as usize,
    ))
}
