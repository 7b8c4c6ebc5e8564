//! The Linux fbdev ioctls this crate uses (`<linux/fb.h>`), through `rustix::ioctl`.

use std::io;
use std::os::fd::AsFd;

use rustix::ioctl::{Getter, Opcode, Setter, ioctl};

const FBIOGET_VSCREENINFO: Opcode = 0x4600;
const FBIOGET_FSCREENINFO: Opcode = 0x4602;
const FBIOPAN_DISPLAY: Opcode = 0x4606;

/// `struct fb_bitfield`: where one colour component lies in a pixel.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FbBitfield {
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) msb_right: u32,
}

impl FbBitfield {
    pub(crate) fn pair(self) -> (u32, u32) {
        (self.offset, self.length)
    }
}

/// `struct fb_var_screeninfo`: the visible and virtual resolution, the pan offsets, the pixel
/// layout and timings.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FbVarScreeninfo {
    pub(crate) xres: u32,
    pub(crate) yres: u32,
    pub(crate) xres_virtual: u32,
    pub(crate) yres_virtual: u32,
    pub(crate) xoffset: u32,
    pub(crate) yoffset: u32,
    pub(crate) bits_per_pixel: u32,
    pub(crate) grayscale: u32,
    pub(crate) red: FbBitfield,
    pub(crate) green: FbBitfield,
    pub(crate) blue: FbBitfield,
    pub(crate) transp: FbBitfield,
    pub(crate) nonstd: u32,
    pub(crate) activate: u32,
    pub(crate) height: u32,
    pub(crate) width: u32,
    pub(crate) accel_flags: u32,
    pub(crate) timings: [u32; 11],
    pub(crate) reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo`: the memory (physical start, length) and the stride.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FbFixScreeninfo {
    pub(crate) id: [u8; 16],
    pub(crate) smem_start: std::ffi::c_ulong,
    pub(crate) smem_len: u32,
    pub(crate) type_: u32,
    pub(crate) type_aux: u32,
    pub(crate) visual: u32,
    pub(crate) xpanstep: u16,
    pub(crate) ypanstep: u16,
    pub(crate) ywrapstep: u16,
    pub(crate) line_length: u32,
    pub(crate) mmio_start: std::ffi::c_ulong,
    pub(crate) mmio_len: u32,
    pub(crate) accel: u32,
    pub(crate) capabilities: u16,
    pub(crate) reserved: [u16; 2],
}

const _: () = assert!(size_of::<FbVarScreeninfo>() == 160);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<FbFixScreeninfo>() == 80);

/// Reads the variable screen information.
pub(crate) fn var_screeninfo(fd: impl AsFd) -> io::Result<FbVarScreeninfo> {
    // SAFETY: FBIOGET_VSCREENINFO writes one `struct fb_var_screeninfo`, which
    // `FbVarScreeninfo` lays out exactly (size checked above).
    let get = unsafe { Getter::<FBIOGET_VSCREENINFO, FbVarScreeninfo>::new() };
    // SAFETY: `get` describes the request correctly (above) and `fd` is a live descriptor.
    Ok(unsafe { ioctl(fd, get) }?)
}

/// Reads the fixed screen information.
pub(crate) fn fix_screeninfo(fd: impl AsFd) -> io::Result<FbFixScreeninfo> {
    // SAFETY: FBIOGET_FSCREENINFO writes one `struct fb_fix_screeninfo`, which
    // `FbFixScreeninfo` lays out exactly (size checked above).
    let get = unsafe { Getter::<FBIOGET_FSCREENINFO, FbFixScreeninfo>::new() };
    // SAFETY: `get` describes the request correctly (above) and `fd` is a live descriptor.
    Ok(unsafe { ioctl(fd, get) }?)
}

/// Pans the display to `var.xoffset`, `var.yoffset`.
pub(crate) fn pan_display(fd: impl AsFd, var: FbVarScreeninfo) -> io::Result<()> {
    // SAFETY: FBIOPAN_DISPLAY reads one `struct fb_var_screeninfo`, which `FbVarScreeninfo`
    // lays out exactly.
    let set = unsafe { Setter::<FBIOPAN_DISPLAY, FbVarScreeninfo>::new(var) };
    // SAFETY: `set` describes the request correctly (above) and `fd` is a live descriptor.
    Ok(unsafe { ioctl(fd, set) }?)
}
