//! Turns the FFmpeg version that `ffmpeg-sys-next` detected into `cfg`s (`ffmpeg_6_0` and so on,
//! set when the system FFmpeg is at least that version), so that what changed between FFmpeg
//! releases is gated on the version actually built against, not on guesses.

fn main() {
    // ffmpeg-sys-next (`links = "ffmpeg"`) prints `cargo:ffmpeg_X_Y=true` for every version the
    // system FFmpeg reaches, and `cargo:ffmpeg_X_Y=` for the others; cargo hands them to us as
    // `DEP_FFMPEG_FFMPEG_X_Y`.
    for (key, value) in std::env::vars() {
        let Some(version) = key.strip_prefix("DEP_FFMPEG_FFMPEG_") else {
            continue;
        };
        let flag = format!("ffmpeg_{}", version.to_lowercase());
        println!("cargo::rustc-check-cfg=cfg({flag})");
        if value == "true" {
            println!("cargo::rustc-cfg={flag}");
        }
    }
    // Named in the code whatever the version found, so always declared.
    println!("cargo::rustc-check-cfg=cfg(ffmpeg_6_0)");
}
