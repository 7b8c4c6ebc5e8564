//! What QEMU's `screendump` wrote (a binary PPM) compared with the picture a guest test drew.

/// A decoded screendump: width, height and RGB bytes.
pub struct Screen {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Screen {
    /// Decodes a binary (P6, 8-bit) PPM.
    pub fn from_ppm(bytes: &[u8]) -> Result<Screen, String> {
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if bytes.get(at) == Some(&b'#') {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            let start = at;
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if start == at {
                return Err("the screendump ends inside its header".into());
            }
            fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
        }
        let number = |i: usize| -> Result<usize, String> {
            fields[i]
                .parse()
                .map_err(|_| format!("bad PPM header field {:?}", fields[i]))
        };
        if fields[0] != "P6" || number(3)? != 255 {
            return Err(format!("not an 8-bit binary PPM (header {fields:?})"));
        }
        let (width, height) = (number(1)?, number(2)?);
        let rgb = bytes[at + 1..].to_vec();
        if rgb.len() != width * height * 3 {
            return Err(format!(
                "a {width}x{height} PPM with {} bytes of pixels",
                rgb.len()
            ));
        }
        Ok(Screen { width, height, rgb })
    }

    /// `Ok` if every pixel is `expected`; otherwise what differs.
    pub fn check_solid(&self, expected: [u8; 3]) -> Result<(), String> {
        let mut wrong = self
            .rgb
            .chunks_exact(3)
            .enumerate()
            .filter(|(_, pixel)| *pixel != expected);
        let Some((first, pixel)) = wrong.next() else {
            return Ok(());
        };
        Err(format!(
            "{} of {} pixels differ; the first at ({}, {}) is {:02x}{:02x}{:02x}, expected {:02x}{:02x}{:02x}",
            wrong.count() + 1,
            self.width * self.height,
            first % self.width,
            first / self.width,
            pixel[0],
            pixel[1],
            pixel[2],
            expected[0],
            expected[1],
            expected[2],
        ))
    }
}

/// Parses `rrggbb`.
pub fn parse_rgb(hex: &str) -> Option<[u8; 3]> {
    if hex.len() != 6 {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppm(width: usize, height: usize, pixel: [u8; 3]) -> Vec<u8> {
        let mut bytes = format!("P6\n# by a test\n{width} {height}\n255\n").into_bytes();
        for _ in 0..width * height {
            bytes.extend_from_slice(&pixel);
        }
        bytes
    }

    #[test]
    fn solid_screens_match_and_others_do_not() {
        let screen = Screen::from_ppm(&ppm(4, 3, [1, 2, 3])).unwrap();
        assert_eq!((screen.width, screen.height), (4, 3));
        assert!(screen.check_solid([1, 2, 3]).is_ok());
        let mut bytes = ppm(4, 3, [1, 2, 3]);
        let last = bytes.len() - 1;
        bytes[last] = 9;
        let err = Screen::from_ppm(&bytes)
            .unwrap()
            .check_solid([1, 2, 3])
            .unwrap_err();
        assert!(
            err.starts_with("1 of 12 pixels differ; the first at (3, 2)"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_and_colours_are_refused() {
        assert!(Screen::from_ppm(b"P3\n1 1\n255\n").is_err());
        assert!(Screen::from_ppm(b"P6\n2 2\n255\n\0\0\0").is_err());
        assert_eq!(parse_rgb("2040ff"), Some([0x20, 0x40, 0xff]));
        assert_eq!(parse_rgb("2040f"), None);
        assert_eq!(parse_rgb("zz0000"), None);
    }
}
