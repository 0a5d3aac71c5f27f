// SPDX-License-Identifier: LGPL-2.1-or-later
//! The command line: `--quick`, `--rounds`, `--opens`, `--reuse`, `--cp-rounds`,
//! `--vms`, `--raw`.

use crate::child::CHUNKS;

pub(crate) const USAGE: &str = "\
usage: cargo bench --features testing --bench devices -- [OPTIONS]   (as root)

  --quick          a smoke run in a few seconds (3 rounds, 1000 opens,
                   3 control-plane rounds, --reuse, unless given); rough
  --rounds N       per-check rounds (default 151; medians over rounds, each
                   round a new set-up: a new draw of every map)
  --opens K        opens per program and round (default 5000), in 20
                   chunks
  --reuse          set the programs up once, not every round (each map's
                   hash seed is then one draw for the whole run)
  --cp-rounds N    control-plane rounds (default 15)
  --vms N          VMs per side for the many-VMs part (default 1000;
                   20 with --quick)
  --raw FILE       also write every chunk's ns per check to FILE (TSV:
                   round, case, program, rules, chunk, ns; a pair's
                   program is pairP.O:KIND and COPY, O its cgroup's order)
  --help           this text";

pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) opens: u32,
    pub(crate) cp_rounds: usize,
    /// QEMU starts per side and control-plane round.
    pub(crate) starts: usize,
    /// VMs per side for the many-VMs part (`density.rs`).
    pub(crate) vms: usize,
    /// Set the programs up once instead of every round.
    pub(crate) reuse: bool,
    /// Where to write every chunk's measurement.
    pub(crate) raw: Option<std::path::PathBuf>,
    /// The options as given (without cargo's `--bench`), for the report.
    pub(crate) given: Vec<String>,
}

/// The options; `--quick` sets the defaults the other options change,
/// wherever it is.
pub(crate) fn options(args: &[String]) -> Result<Option<Options>, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        rounds: if quick { 3 } else { 151 },
        opens: if quick { 1000 } else { 5000 },
        cp_rounds: if quick { 3 } else { 15 },
        starts: if quick { 4 } else { 10 },
        vms: if quick { 20 } else { 1000 },
        reuse: quick,
        raw: None,
        given: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            o.given.extend([name.to_string(), v.clone()]);
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: {v:?} is not a positive number")),
            }
        };
        match arg.as_str() {
            // cargo bench passes --bench to a harness = false target.
            "--bench" => {}
            "--quick" => o.given.push(arg.clone()),
            "--reuse" => {
                o.given.push(arg.clone());
                o.reuse = true;
            }
            "--rounds" => o.rounds = value("--rounds")?,
            "--opens" => {
                o.opens = value("--opens")?
                    .try_into()
                    .ok()
                    .filter(|&k| k >= CHUNKS)
                    .ok_or(format!("--opens: from {CHUNKS} to {}", u32::MAX))?
            }
            "--cp-rounds" => o.cp_rounds = value("--cp-rounds")?,
            "--vms" => o.vms = value("--vms")?,
            "--raw" => o.raw = Some(it.next().ok_or("--raw needs a file")?.into()),
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(o))
}
