//! The demo's synthetic video: a moving RGBA test pattern whose every pixel can be recomputed
//! from its position and the frame number, so consumers can check what they received.

/// The colour of pixel (`x`, `y`) in frame `frame`.
pub fn pixel(x: u32, y: u32, frame: u64) -> [u8; 4] {
    let t = frame as u32;
    [
        x.wrapping_add(t.wrapping_mul(4)) as u8,
        y.wrapping_add(t.wrapping_mul(2)) as u8,
        (x ^ y).wrapping_add(t) as u8,
        0xff,
    ]
}

/// Draws frame `frame` into `rgba` (`width * height * 4` bytes, rows `width * 4` apart).
pub fn draw(rgba: &mut [u8], width: u32, frame: u64) {
    for (y, row) in rgba.chunks_exact_mut(width as usize * 4).enumerate() {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&pixel(x as u32, y as u32, frame));
        }
    }
}

/// A fast checksum of a frame: the wrapping sum of its 64-bit words, rotated by position.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum = 0u64;
    for (i, word) in words.by_ref().enumerate() {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        sum = sum.wrapping_add(word.rotate_left(i as u32 & 63));
    }
    words
        .remainder()
        .iter()
        .fold(sum, |sum, &b| sum.wrapping_add(u64::from(b)))
}

/// Checks `samples` pixels spread over the frame against the pattern of frame `frame`.
pub fn spot_check(rgba: &[u8], width: u32, height: u32, frame: u64, samples: u32) -> bool {
    (0..samples).all(|i| {
        let x = (i.wrapping_mul(7919) ^ frame as u32) % width;
        let y = (i.wrapping_mul(104_729)) % height;
        let at = (y as usize * width as usize + x as usize) * 4;
        rgba.get(at..at + 4) == Some(&pixel(x, y, frame)[..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_frames_pass_their_own_spot_check_and_not_others() {
        let (w, h) = (64, 32);
        let mut frame = vec![0u8; (w * h * 4) as usize];
        draw(&mut frame, w, 5);
        assert!(spot_check(&frame, w, h, 5, 64));
        assert!(!spot_check(&frame, w, h, 6, 64));
    }

    #[test]
    fn checksums_differ_between_frames() {
        let (w, h) = (64, 32);
        let mut a = vec![0u8; (w * h * 4) as usize];
        let mut b = a.clone();
        draw(&mut a, w, 1);
        draw(&mut b, w, 2);
        assert_ne!(checksum(&a), checksum(&b));
        assert_eq!(checksum(&a), checksum(&a.clone()));
    }
}
