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
    let ctx = [access_type, major, minor];
    let mut stack = [0u8; 512];
    let mut values: Vec<u32> = Vec::new();
    let mut r = [0u64; 11];
    r[1] = CTX;
    r[10] = STACK_TOP;
    let stack_at = |addr: u64, size: u64| -> usize {
        assert!(
            addr >= STACK_BASE && addr + size <= STACK_TOP,
            "stack access at {addr:#x}"
        );
        (addr - STACK_BASE) as usize
    };
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (d, s) = (i.dst() as usize, i.src() as usize);
        let imm = i.imm as i64 as u64;
        pc += 1;
        let jump = |pc: usize| (pc as i64 + i.off as i64) as usize;
        match i.code {
            // ldx B, W, DW
            0x71 | 0x61 | 0x79 => {
                let addr = r[s].wrapping_add(i.off as i64 as u64);
                let size = match i.code {
                    0x71 => 1,
                    0x61 => 4,
                    _ => 8,
                };
                r[d] = if (CTX..CTX + 12).contains(&addr) {
                    assert!(
                        size == 4 && addr % 4 == 0,
                        "ctx load of {size} at {addr:#x}"
                    );
                    ctx[((addr - CTX) / 4) as usize] as u64
                } else if (VALUE..VALUE + 8 * values.len() as u64).contains(&addr) {
                    assert!(size == 4 && addr % 8 == 0, "load inside a value");
                    values[((addr - VALUE) / 8) as usize] as u64
                } else if addr >= DIRECT {
                    let (fd, off) = (
                        ((addr - DIRECT) >> 24) as i32,
                        ((addr - DIRECT) & 0xff_ffff) as usize,
                    );
                    let Some(Map::Value(bytes)) = maps.get(&fd) else {
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
                } else {
                    panic!("load from {addr:#x}")
                };
            }
            // stx W, stx DW, st W
            0x63 | 0x7b | 0x62 => {
                let addr = r[d].wrapping_add(i.off as i64 as u64);
                let v = if i.code == 0x62 { imm } else { r[s] };
                let size = if i.code == 0x7b { 8 } else { 4 };
                let o = stack_at(addr, size);
                let bytes = if size == 8 {
                    v.to_ne_bytes().to_vec()
                } else {
                    (v as u32).to_ne_bytes().to_vec()
                };
                stack[o..o + size as usize].copy_from_slice(&bytes);
            }
            // ld imm64
            0x18 => {
                let hi = prog[pc].imm as u32 as u64;
                pc += 1;
                r[d] = if i.src() == BPF_PSEUDO_MAP_FD {
                    assert!(maps.contains_key(&i.imm), "unknown map fd {}", i.imm);
                    MAP + i.imm as u32 as u64
                } else if i.src() == BPF_PSEUDO_MAP_VALUE {
                    assert!(
                        matches!(maps.get(&i.imm), Some(Map::Value(_))),
                        "map fd {} is not a value map",
                        i.imm
                    );
                    DIRECT + ((i.imm as u64) << 24) + hi
                } else {
                    (hi << 32) | i.imm as u32 as u64
                };
            }
            0xb4 => r[d] = i.imm as u32 as u64, // w = imm
            0xb7 => r[d] = imm,
            0xbf => r[d] = r[s],
            0x07 => r[d] = r[d].wrapping_add(imm),
            0x0f => r[d] = r[d].wrapping_add(r[s]),
            0x2f => r[d] = r[d].wrapping_mul(r[s]),
            0xaf => r[d] ^= r[s],
            0x7f => r[d] >>= r[s] & 63,
            0x47 => r[d] |= imm,
            0x4f => r[d] |= r[s],
            0x57 => r[d] &= imm,
            0x5f => r[d] &= r[s],
            0x67 => r[d] <<= imm & 63,
            0x6f => r[d] <<= r[s] & 63,
            0x77 => r[d] >>= imm & 63,
            0x05 => pc = jump(pc),
            0x15 => {
                if r[d] == imm {
                    pc = jump(pc)
                }
            }
            0x45 => {
                if r[d] & imm != 0 {
                    pc = jump(pc)
                }
            }
            0xa5 => {
                if r[d] < imm {
                    pc = jump(pc)
                }
            }
            0x1d => {
                if r[d] == r[s] {
                    pc = jump(pc)
                }
            }
            0x85 => {
                assert_eq!(i.imm, BPF_FUNC_MAP_LOOKUP_ELEM);
                let fd = r[1]
                    .checked_sub(MAP)
                    .filter(|&f| f <= u32::MAX as u64)
                    .expect("lookup on something that is not a map") as u32
                    as i32;
                let found = match &maps[&fd] {
                    Map::Hash(m) => {
                        let o = stack_at(r[2], 8);
                        m.get(&u64::from_ne_bytes(stack[o..o + 8].try_into().unwrap()))
                            .copied()
                    }
                    Map::Value(_) => panic!("lookup in a value map"),
                    Map::Array { len, words } => {
                        let o = stack_at(r[2], 4);
                        let slot = u32::from_ne_bytes(stack[o..o + 4].try_into().unwrap());
                        (slot < *len).then(|| words.get(&slot).copied().unwrap_or(0))
                    }
                };
                r[0] = match found {
                    Some(v) => {
                        values.push(v);
                        VALUE + 8 * (values.len() as u64 - 1)
                    }
                    None => 0,
                };
                // r1-r5 are clobbered by a call
                r[1..6].fill(0xdead_beef);
            }
            0x95 => return r[0],
            op => panic!("opcode {op:#x} at {} not interpreted", pc - 1),
        }
    }
    panic!("program did not exit");
}
