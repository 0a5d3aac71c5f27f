// SPDX-License-Identifier: LGPL-2.1-or-later
//! A minimal assembler for programs written with labels instead of jump
//! offsets.
#![forbid(unsafe_code)]

use crate::insn::*;

/// A jump target, bound to an instruction index by [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Instructions being assembled.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// A new label, bound later.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) {
        assert!(self.labels[label.0].is_none(), "label bound twice");
        self.labels[label.0] = Some(self.insns.len());
    }

    /// Appends one instruction.
    pub fn emit(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// Appends a two-slot instruction.
    pub fn emit2(&mut self, insns: [Insn; 2]) {
        self.insns.extend(insns);
    }

    /// Appends `insn`, a jump whose offset is resolved to `target`.
    pub fn jump(&mut self, insn: Insn, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.insns.push(insn);
    }

    /// The instructions, every jump resolved. Panics on a label never bound
    /// or a jump out of range: a bug in the program's source, caught by its
    /// tests.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, Label(l)) in self.fixups {
            let target = self.labels[l].expect("jump to a label that is never bound");
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::op::*;
    use crate::insn::reg::*;
    use crate::testing::disasm::disassemble;

    #[test]
    fn labels_resolve_forward_and_back() {
        let mut a = Asm::default();
        let (top, end) = (a.label(), a.label());
        a.bind(top);
        a.emit(mov64_imm(R0, 0));
        a.jump(jmp_imm(BPF_JEQ, R1, 0, 0), end);
        a.jump(ja(0), top);
        a.bind(end);
        a.emit(exit());
        let p = a.finish();
        assert_eq!((p[1].off, p[2].off), (1, -3));
        assert_eq!(
            disassemble(&p),
            "  0: r0 = 0\n  1: if r1 == 0x0 goto <3>\n  2: goto <0>\n  3: exit\n"
        );
    }
}
