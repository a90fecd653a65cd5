//! 802.1Q tagging for the lab hosts without the kernel's VLAN devices.
//!
//! Some kernels (this project's CI VM among them) are built without `CONFIG_VLAN_8021Q`, so
//! `ip link add … type vlan` fails with "Unknown device type". The lab tags frames instead with
//! two tiny tc eBPF classifiers on each host's `lan` veth: on egress `bpf_skb_vlan_push(skb,
//! 0x8100, VID)`, on ingress `bpf_skb_vlan_pop(skb)`. With tx VLAN offload off on every veth
//! (`ethtool -K IF txvlan off`) the tag travels inside the frame, where the middle box's XDP
//! program sees it.
//!
//! tc (iproute2, via libbpf) loads programs from ELF object files; this module writes such a
//! file directly — a relocatable ELF64 for `EM_BPF` with one `classifier` section, a `license`
//! section and a symbol table — so no compiler is needed. Writing bytes needs no unsafe code.

/// `BPF_FUNC_skb_vlan_push`.
const SKB_VLAN_PUSH: i32 = 18;
/// `BPF_FUNC_skb_vlan_pop`.
const SKB_VLAN_POP: i32 = 19;

fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = op;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

const MOV64_IMM: u8 = 0xb7;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

/// Program: push an 802.1Q tag with `vid` (priority 0), return TC_ACT_OK.
pub fn push_program(vid: u16) -> Vec<u8> {
    let mut p = Vec::new();
    // r1 = skb (already); r2 = htons(ETH_P_8021Q) as the helper's __be16; r3 = vid.
    p.extend(insn(MOV64_IMM, 2, 0, 0, i32::from(0x8100u16.to_be())));
    p.extend(insn(MOV64_IMM, 3, 0, 0, i32::from(vid & 0x0fff)));
    p.extend(insn(CALL, 0, 0, 0, SKB_VLAN_PUSH));
    p.extend(insn(MOV64_IMM, 0, 0, 0, 0));
    p.extend(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Program: pop the outer VLAN tag (a no-op without one), return TC_ACT_OK.
pub fn pop_program() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(insn(CALL, 0, 0, 0, SKB_VLAN_POP));
    p.extend(insn(MOV64_IMM, 0, 0, 0, 0));
    p.extend(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The section holding the program (tc: `sec classifier`).
pub const SECTION: &str = "classifier";

struct Section {
    name: u32,
    kind: u32,
    flags: u64,
    data: Vec<u8>,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

/// A relocatable ELF64 (little endian, `EM_BPF`) holding `code` in section `classifier` as a
/// global function named `prog`, and a GPL `license` section.
pub fn elf_object(code: &[u8]) -> Vec<u8> {
    // Section name table.
    let mut shstr = vec![0u8];
    let add = |tab: &mut Vec<u8>, s: &str| -> u32 {
        let off = tab.len() as u32;
        tab.extend_from_slice(s.as_bytes());
        tab.push(0);
        off
    };
    let n_prog = add(&mut shstr, SECTION);
    let n_lic = add(&mut shstr, "license");
    let n_sym = add(&mut shstr, ".symtab");
    let n_str = add(&mut shstr, ".strtab");
    let n_shstr = add(&mut shstr, ".shstrtab");
    // Symbol name table and symbols.
    let mut strtab = vec![0u8];
    let s_prog = add(&mut strtab, "prog");
    let mut symtab = vec![0u8; 24]; // the null symbol
    let mut sym = [0u8; 24];
    sym[0..4].copy_from_slice(&s_prog.to_le_bytes());
    sym[4] = 0x12; // STB_GLOBAL << 4 | STT_FUNC
    sym[5] = 0; // STV_DEFAULT
    sym[6..8].copy_from_slice(&1u16.to_le_bytes()); // section index of the program
    sym[8..16].copy_from_slice(&0u64.to_le_bytes());
    sym[16..24].copy_from_slice(&(code.len() as u64).to_le_bytes());
    symtab.extend_from_slice(&sym);

    let sections = [
        Section { name: n_prog, kind: 1, flags: 0x6, data: code.to_vec(), link: 0, info: 0, align: 8, entsize: 0 },
        Section { name: n_lic, kind: 1, flags: 0x3, data: b"GPL\0".to_vec(), link: 0, info: 0, align: 1, entsize: 0 },
        // .symtab: link = index of .strtab (4), info = first global symbol (1).
        Section { name: n_sym, kind: 2, flags: 0, data: symtab, link: 4, info: 1, align: 8, entsize: 24 },
        Section { name: n_str, kind: 3, flags: 0, data: strtab, link: 0, info: 0, align: 1, entsize: 0 },
        Section { name: n_shstr, kind: 3, flags: 0, data: shstr, link: 0, info: 0, align: 1, entsize: 0 },
    ];
    let mut out = vec![0u8; 64];
    let mut offsets = Vec::with_capacity(sections.len());
    for s in &sections {
        while out.len() as u64 % s.align.max(1) != 0 {
            out.push(0);
        }
        offsets.push(out.len() as u64);
        out.extend_from_slice(&s.data);
    }
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]); // null section header
    for (s, off) in sections.iter().zip(&offsets) {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&s.name.to_le_bytes());
        h[4..8].copy_from_slice(&s.kind.to_le_bytes());
        h[8..16].copy_from_slice(&s.flags.to_le_bytes());
        h[16..24].copy_from_slice(&0u64.to_le_bytes()); // sh_addr
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
        h[40..44].copy_from_slice(&s.link.to_le_bytes());
        h[44..48].copy_from_slice(&s.info.to_le_bytes());
        h[48..56].copy_from_slice(&s.align.to_le_bytes());
        h[56..64].copy_from_slice(&s.entsize.to_le_bytes());
        out.extend_from_slice(&h);
    }
    let shnum = (sections.len() + 1) as u16;
    let hdr = &mut out[..64];
    hdr[0..4].copy_from_slice(b"\x7fELF");
    hdr[4] = 2; // ELFCLASS64
    hdr[5] = 1; // little endian
    hdr[6] = 1; // EV_CURRENT
    hdr[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    hdr[18..20].copy_from_slice(&247u16.to_le_bytes()); // EM_BPF
    hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
    hdr[40..48].copy_from_slice(&shoff.to_le_bytes());
    hdr[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    hdr[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    hdr[60..62].copy_from_slice(&shnum.to_le_bytes());
    hdr[62..64].copy_from_slice(&(shnum - 1).to_le_bytes()); // .shstrtab is the last
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_encode_the_helpers() {
        let p = push_program(100);
        assert_eq!(p.len(), 5 * 8);
        assert_eq!(&p[0..2], &[0xb7, 0x02]);
        assert_eq!(i32::from_le_bytes(p[4..8].try_into().unwrap()), 0x0081);
        assert_eq!(i32::from_le_bytes(p[12..16].try_into().unwrap()), 100);
        assert_eq!(p[16], 0x85);
        assert_eq!(i32::from_le_bytes(p[20..24].try_into().unwrap()), 18);
        assert_eq!(p[p.len() - 8], 0x95);
        let q = pop_program();
        assert_eq!(i32::from_le_bytes(q[4..8].try_into().unwrap()), 19);
    }

    #[test]
    fn elf_layout() {
        let code = push_program(7);
        let e = elf_object(&code);
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([e[18], e[19]]), 247);
        let shoff = u64::from_le_bytes(e[40..48].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes([e[60], e[61]]) as usize;
        assert_eq!(e.len(), shoff + 64 * shnum);
        // Section 1 holds the code at its offset.
        let h1 = &e[shoff + 64..shoff + 128];
        let off = u64::from_le_bytes(h1[24..32].try_into().unwrap()) as usize;
        let size = u64::from_le_bytes(h1[32..40].try_into().unwrap()) as usize;
        assert_eq!(&e[off..off + size], &code[..]);
        // The section name table names it "classifier".
        let hs = &e[shoff + 64 * (shnum - 1)..shoff + 64 * shnum];
        let soff = u64::from_le_bytes(hs[24..32].try_into().unwrap()) as usize;
        let name = u32::from_le_bytes(h1[0..4].try_into().unwrap()) as usize;
        assert_eq!(&e[soff + name..soff + name + SECTION.len()], SECTION.as_bytes());
    }
}
