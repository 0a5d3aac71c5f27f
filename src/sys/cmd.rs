// SPDX-License-Identifier: LGPL-2.1-or-later
//! The `enum bpf_cmd` values the library uses: the commands `bpf.rs`
//! issues and the test hook counts, delays and fails.
#![allow(missing_docs)]

pub const MAP_CREATE: i32 = 0;
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const MAP_UPDATE_ELEM: i32 = 2;
pub const MAP_DELETE_ELEM: i32 = 3;
pub const MAP_GET_NEXT_KEY: i32 = 4;
pub const PROG_LOAD: i32 = 5;
pub const PROG_ATTACH: i32 = 8;
pub const PROG_DETACH: i32 = 9;
pub const PROG_GET_FD_BY_ID: i32 = 13;
pub const MAP_GET_FD_BY_ID: i32 = 14;
pub const OBJ_GET_INFO_BY_FD: i32 = 15;
pub const PROG_QUERY: i32 = 16;
pub const MAP_LOOKUP_BATCH: i32 = 24;
pub const MAP_UPDATE_BATCH: i32 = 26;
