// SPDX-License-Identifier: LGPL-2.1-or-later
//! A userspace interpreter for the opcodes the device programs use, with
//! maps held in memory, so that the exact instructions the library loads
//! can be run without the kernel (unit tests, and the three-way oracle in
//! `tests/oracle.rs`, which feeds it the maps dumped from the kernel).
#![forbid(unsafe_code)]

use crate::insn::op::*;
use crate::insn::Insn;
use std::collections::HashMap;

const CTX: u64 = 0x1000_0000;
const STACK_TOP: u64 = 0x2000_0200;
const STACK_BASE: u64 = STACK_TOP - 512;
const VALUE: u64 = 0x3000_0000;
const MAP: u64 = 0x4000_0000;
/// `&value[0]` of the map with fd `f` is `DIRECT + f << 24`.
const DIRECT: u64 = 0x1_0000_0000;

/// A map as the program sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Map {
    /// `BPF_MAP_TYPE_HASH`, 8-byte keys, 4-byte values.
    Hash(HashMap<u64, u32>),
    /// `BPF_MAP_TYPE_ARRAY`, 4-byte keys, 4-byte values: every slot below
    /// the length exists (missing slots read 0).
    Array {
        /// `max_entries`.
        len: u32,
        /// Non-zero slots.
        words: HashMap<u32, u32>,
    },
    /// A one-element array whose value the program addresses directly
    /// (`BPF_LD_MAP_VALUE`): the value's bytes, native-endian.
    Value(Vec<u8>),
}

/// The maps a program refers to, by the fd its `ld_imm64` instructions carry.
pub type Maps = HashMap<i32, Map>;

/// Runs `prog` on `struct bpf_cgroup_dev_ctx { access_type, major, minor }`
/// with `maps`; returns r0. Panics on anything the verifier would reject
/// that it meets (a load through a null pointer, an unknown opcode or map).
pub fn run(prog: &[Insn], maps: &Maps, access_type: u32, major: u32, minor: u32) -> u64 {
    let mut m = Machine {
        prog,
        maps,
        ctx: [access_type, major, minor],
        stack: [0u8; 512],
        values: Vec::new(),
        r: [0u64; 11],
        pc: 0,
    };
    m.r[1] = CTX;
    m.r[10] = STACK_TOP;
    for _ in 0..10_000 {
        if let Some(r0) = m.step() {
            return r0;
        }
    }
    panic!("program did not exit");
}

/// A program being run: its registers, stack and the values lookups found.
struct Machine<'a> {
    prog: &'a [Insn],
    maps: &'a Maps,
    ctx: [u32; 3],
    stack: [u8; 512],
    values: Vec<u32>,
    r: [u64; 11],
    pc: usize,
}

impl Machine<'_> {
    /// Runs one instruction; r0 when it was `exit`.
    fn step(&mut self) -> Option<u64> {
        let i = self.prog[self.pc];
        let (d, s) = (i.dst() as usize, i.src() as usize);
        let imm = i.imm as i64 as u64;
        self.pc += 1;
        let (rd, rs) = (self.r[d], self.r[s]);
        let taken = match i.code {
            0x71 | 0x61 | 0x79 => {
                self.r[d] = self.load(i);
                false
            }
            0x63 | 0x7b | 0x62 => {
                self.store(i);
                false
            }
            0x18 => {
                self.r[d] = self.ld_imm64(i);
                false
            }
            0x85 => {
                self.call(i);
                false
            }
            0x95 => return Some(self.r[0]),
            0x05 => true,
            0x15 => rd == imm,
            0x45 => rd & imm != 0,
            0xa5 => rd < imm,
            0x1d => rd == rs,
            _ => {
                alu(i.code, &mut self.r[d], rs, imm, i.imm).unwrap_or_else(|| {
                    panic!("opcode {:#x} at {} not interpreted", i.code, self.pc - 1)
                });
                false
            }
        };
        if taken {
            self.pc = (self.pc as i64 + i.off as i64) as usize;
        }
        None
    }

    fn stack_at(addr: u64, size: u64) -> usize {
        assert!(
            addr >= STACK_BASE && addr + size <= STACK_TOP,
            "stack access at {addr:#x}"
        );
        (addr - STACK_BASE) as usize
    }

    /// `ldx` B, W, DW: from the context, a looked-up value, or a value map.
    fn load(&self, i: Insn) -> u64 {
        let addr = self.r[i.src() as usize].wrapping_add(i.off as i64 as u64);
        let size = match i.code {
            0x71 => 1,
            0x61 => 4,
            _ => 8,
        };
        if (CTX..CTX + 12).contains(&addr) {
            assert!(
                size == 4 && addr % 4 == 0,
                "ctx load of {size} at {addr:#x}"
            );
            self.ctx[((addr - CTX) / 4) as usize] as u64
        } else if (VALUE..VALUE + 8 * self.values.len() as u64).contains(&addr) {
            assert!(size == 4 && addr % 8 == 0, "load inside a value");
            self.values[((addr - VALUE) / 8) as usize] as u64
        } else if addr >= DIRECT {
            self.load_direct(addr, size)
        } else {
            panic!("load from {addr:#x}")
        }
    }

    /// A load of `size` bytes from a value map's value (`BPF_LD_MAP_VALUE`).
    fn load_direct(&self, addr: u64, size: usize) -> u64 {
        let (fd, off) = (
            ((addr - DIRECT) >> 24) as i32,
            ((addr - DIRECT) & 0xff_ffff) as usize,
        );
        let Some(Map::Value(bytes)) = self.maps.get(&fd) else {
            panic!("direct load from map fd {fd}, which is not a value map")
        };
        assert!(off % size == 0, "unaligned load of {size} at {off}");
        let b = bytes.get(off..off + size).unwrap_or_else(|| {
            panic!("load of {size} at {off} outside a value of {}", bytes.len())
        });
        match size {
            1 => b[0] as u64,
            4 => u32::from_ne_bytes(b.try_into().unwrap()) as u64,
            _ => u64::from_ne_bytes(b.try_into().unwrap()),
        }
    }

    /// `stx` W, `stx` DW, `st` W: to the stack.
    fn store(&mut self, i: Insn) {
        let addr = self.r[i.dst() as usize].wrapping_add(i.off as i64 as u64);
        let v = if i.code == 0x62 {
            i.imm as i64 as u64
        } else {
            self.r[i.src() as usize]
        };
        let size = if i.code == 0x7b { 8 } else { 4 };
        let o = Self::stack_at(addr, size);
        let bytes = if size == 8 {
            v.to_ne_bytes().to_vec()
        } else {
            (v as u32).to_ne_bytes().to_vec()
        };
        self.stack[o..o + size as usize].copy_from_slice(&bytes);
    }

    /// `ld_imm64`: a constant, a map or a map's value (two slots).
    fn ld_imm64(&mut self, i: Insn) -> u64 {
        let hi = self.prog[self.pc].imm as u32 as u64;
        self.pc += 1;
        if i.src() == BPF_PSEUDO_MAP_FD {
            assert!(self.maps.contains_key(&i.imm), "unknown map fd {}", i.imm);
            MAP + i.imm as u32 as u64
        } else if i.src() == BPF_PSEUDO_MAP_VALUE {
            assert!(
                matches!(self.maps.get(&i.imm), Some(Map::Value(_))),
                "map fd {} is not a value map",
                i.imm
            );
            DIRECT + ((i.imm as u64) << 24) + hi
        } else {
            (hi << 32) | i.imm as u32 as u64
        }
    }

    /// `call bpf_map_lookup_elem`.
    fn call(&mut self, i: Insn) {
        assert_eq!(i.imm, BPF_FUNC_MAP_LOOKUP_ELEM);
        let r = &mut self.r;
        let fd = r[1]
            .checked_sub(MAP)
            .filter(|&f| f <= u32::MAX as u64)
            .expect("lookup on something that is not a map") as u32 as i32;
        let stack = &self.stack;
        let found = match &self.maps[&fd] {
            Map::Hash(m) => {
                let o = Self::stack_at(r[2], 8);
                m.get(&u64::from_ne_bytes(stack[o..o + 8].try_into().unwrap()))
                    .copied()
            }
            Map::Value(_) => panic!("lookup in a value map"),
            Map::Array { len, words } => {
                let o = Self::stack_at(r[2], 4);
                let slot = u32::from_ne_bytes(stack[o..o + 4].try_into().unwrap());
                (slot < *len).then(|| words.get(&slot).copied().unwrap_or(0))
            }
        };
        r[0] = match found {
            Some(v) => {
                self.values.push(v);
                VALUE + 8 * (self.values.len() as u64 - 1)
            }
            None => 0,
        };
        // r1-r5 are clobbered by a call
        r[1..6].fill(0xdead_beef);
    }
}

/// An ALU instruction on `dst`; None for an opcode that is not one.
fn alu(code: u8, dst: &mut u64, src: u64, imm: u64, imm32: i32) -> Option<()> {
    match code {
        0xb4 => *dst = imm32 as u32 as u64, // w = imm
        0xb7 => *dst = imm,
        0xbf => *dst = src,
        0x07 => *dst = dst.wrapping_add(imm),
        0x0f => *dst = dst.wrapping_add(src),
        0x2f => *dst = dst.wrapping_mul(src),
        0xaf => *dst ^= src,
        0x7f => *dst >>= src & 63,
        0x47 => *dst |= imm,
        0x4f => *dst |= src,
        0x57 => *dst &= imm,
        0x5f => *dst &= src,
        0x67 => *dst <<= imm & 63,
        0x6f => *dst <<= src & 63,
        0x77 => *dst >>= imm & 63,
        _ => return None,
    }
    Some(())
}
