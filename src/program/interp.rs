//! A userspace interpreter for the opcodes the device programs use, with a
//! fake hash map, so the programs' logic is tested without root.

use crate::insn::op::*;
use crate::insn::Insn;
use std::collections::HashMap;

const CTX: u64 = 0x1000_0000;
const STACK_TOP: u64 = 0x2000_0200;
const STACK_BASE: u64 = STACK_TOP - 512;
const MAP: u64 = 0x4000_0000;
const VALUE: u64 = 0x3000_0000;

/// Runs `prog` (built for any map fd) on `struct bpf_cgroup_dev_ctx
/// { access_type, major, minor }` with `map` as the rule map; returns r0.
pub fn run(
    prog: &[Insn],
    map: &HashMap<u64, u32>,
    access_type: u32,
    major: u32,
    minor: u32,
) -> u64 {
    let ctx = [access_type, major, minor];
    let mut stack = [0u8; 512];
    let mut value: Option<u32> = None;
    let mut r = [0u64; 11];
    r[1] = CTX;
    r[10] = STACK_TOP;
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (d, s) = (i.dst() as usize, i.src() as usize);
        let imm = i.imm as i64 as u64;
        pc += 1;
        let jump = |pc: usize| (pc as i64 + i.off as i64) as usize;
        match i.code {
            // ldx W
            0x61 => {
                let addr = r[s].wrapping_add(i.off as i64 as u64);
                r[d] = if (CTX..CTX + 12).contains(&addr) {
                    assert_eq!(addr % 4, 0, "unaligned ctx load");
                    ctx[((addr - CTX) / 4) as usize] as u64
                } else if addr == VALUE {
                    value.expect("load through a null value pointer") as u64
                } else {
                    panic!("load from {addr:#x}")
                };
            }
            // stx DW
            0x7b => {
                let addr = r[d].wrapping_add(i.off as i64 as u64);
                assert!(
                    (STACK_BASE..STACK_TOP - 7).contains(&addr),
                    "store to {addr:#x}"
                );
                let o = (addr - STACK_BASE) as usize;
                stack[o..o + 8].copy_from_slice(&r[s].to_le_bytes());
            }
            // ld imm64
            0x18 => {
                let hi = prog[pc].imm as u32 as u64;
                pc += 1;
                r[d] = if i.src() == BPF_PSEUDO_MAP_FD {
                    MAP
                } else {
                    (hi << 32) | i.imm as u32 as u64
                };
            }
            0xb4 => r[d] = i.imm as u32 as u64, // w = imm
            0xb7 => r[d] = imm,
            0xbf => r[d] = r[s],
            0x07 => r[d] = r[d].wrapping_add(imm),
            0x47 => r[d] |= imm,
            0x4f => r[d] |= r[s],
            0x57 => r[d] &= imm,
            0x5f => r[d] &= r[s],
            0x67 => r[d] <<= imm & 63,
            0x6f => r[d] <<= r[s] & 63,
            0x77 => r[d] >>= imm & 63,
            0x15 => {
                if r[d] == imm {
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
                assert_eq!(r[1], MAP, "lookup on something that is not the map");
                let o = (r[2] - STACK_BASE) as usize;
                let key = u64::from_le_bytes(stack[o..o + 8].try_into().unwrap());
                value = map.get(&key).copied();
                r[0] = if value.is_some() { VALUE } else { 0 };
                // r1-r5 are clobbered by a call
                r[1..6].fill(0xdead_beef);
            }
            0x95 => return r[0],
            op => panic!("opcode {op:#x} at {} not interpreted", pc - 1),
        }
    }
    panic!("program did not exit");
}
