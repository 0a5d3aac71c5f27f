// SPDX-License-Identifier: LGPL-2.1-or-later
//! What the library holds for a cgroup whose program it attached or
//! adopted: the program and its maps, in one of the two current formats.
#![forbid(unsafe_code)]

use crate::hash::HashMaps;
use crate::insn::Insn;
use crate::program;
use crate::table::Table;
use crate::Result;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The state of a cgroup, as `vircgroup_v2_devices` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Map fd, -1 when none.
    pub mapfd: i32,
    /// Program fd, -1 when none.
    pub progfd: i32,
    /// Rules (map entries; keys) in the map.
    pub count: usize,
    /// Capacity of the map, in rules.
    pub max: usize,
}

impl State {
    /// Nothing held.
    pub const EMPTY: State = State {
        mapfd: -1,
        progfd: -1,
        count: 0,
        max: 0,
    };
}

/// The maps of a program of this library.
#[derive(Debug)]
pub(crate) enum Maps {
    /// Format 6: the table (Linux 5.5 and later).
    Table(Table),
    /// Format 5: a hash map and an index.
    Hash(HashMaps),
}

impl Maps {
    /// The program for these maps.
    pub fn program(&self) -> Vec<Insn> {
        match self {
            Maps::Table(t) => program::table::for_table(t),
            Maps::Hash(h) => program::hash_program(h.map().as_raw_fd(), h.index().as_raw_fd()),
        }
    }

    /// The name the program is loaded with.
    pub fn name(&self) -> &'static str {
        match self {
            Maps::Table(_) => program::table::NAME,
            Maps::Hash(_) => program::hash::NAME,
        }
    }

    /// Capacity in rules.
    pub fn max(&self) -> u32 {
        match self {
            Maps::Table(t) => t.max(),
            Maps::Hash(h) => h.max(),
        }
    }

    /// The rule map's fd (the table, or the hash map).
    pub fn map_fd(&self) -> RawFd {
        match self {
            Maps::Table(t) => t.map().as_raw_fd(),
            Maps::Hash(h) => h.map().as_raw_fd(),
        }
    }

    /// Every fd.
    fn fds(&self) -> Vec<RawFd> {
        match self {
            Maps::Table(t) => vec![t.map().as_raw_fd()],
            Maps::Hash(h) => vec![h.map().as_raw_fd(), h.index().as_raw_fd()],
        }
    }

    /// The rules, read consistently (the table: with no writer at work;
    /// the hash maps: the copy, fresh when the caller refreshed it).
    pub fn rules(&self) -> Result<HashMap<u64, u32>> {
        match self {
            Maps::Table(t) => Ok(t.read(|t| t.entries())?.into_iter().collect()),
            Maps::Hash(h) => Ok(h.rules().clone()),
        }
    }

    /// Rules held.
    pub fn count(&self) -> Result<usize> {
        match self {
            Maps::Table(t) => t.read(|t| t.count()),
            Maps::Hash(h) => Ok(h.rules().len()),
        }
    }
}

/// A program of this library attached to a cgroup, and its maps.
#[derive(Debug)]
pub(crate) struct Held {
    pub prog: OwnedFd,
    pub prog_id: u32,
    pub maps: Maps,
}

impl Held {
    /// The state C callers see.
    pub fn state(&self) -> Result<State> {
        Ok(State {
            mapfd: self.maps.map_fd(),
            progfd: self.prog.as_raw_fd(),
            count: self.maps.count()?,
            max: self.maps.max() as usize,
        })
    }

    /// Every fd.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = self.maps.fds();
        fds.push(self.prog.as_raw_fd());
        fds
    }
}
