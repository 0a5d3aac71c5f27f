mod common;
use common::*;
use vircgroup_v2_devices::{devices, rules::Rule};

#[test]
fn smoke() {
    let Some(mount) = privileged() else { return };
    let cg = Scratch::new(&mount);
    let nodes = Nodes::new();
    let null = nodes.node("null", 'c', 1, 3);
    let nodrv = nodes.node("nodrv", 'c', 240, 1);
    assert!(cg.allowed(&format!("r:{null}")));
    devices::deny_all(cg.p()).unwrap();
    assert!(!cg.allowed(&format!("r:{null}")));
    devices::allow(cg.p(), &Rule::new(b'c', 1, 3, 3).unwrap()).unwrap();
    println!("{:?}", cg.probe(&[format!("r:{null}"), format!("rw:{null}"), format!("r:{nodrv}")]));
    println!("{}", cg.list());
    println!("{:?}", devices::state(cg.p()));
}
