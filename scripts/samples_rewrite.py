# Make samples/examples.pcap from samples/sample.pcap: the same traffic with the addresses of
# the example rule files (web server 198.18.10.5 / 2001:2::12, DNS server 198.18.53.2, pings
# from the monitoring hosts 198.18.201.10-11), checksums recomputed.
#   python3 scripts/samples_rewrite.py samples/sample.pcap samples/examples.pcap
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
M4 = {bytes([198,18,0,10]): bytes([198,18,10,5]), bytes([198,18,0,53]): bytes([198,18,53,2]), **{bytes([198,18,1,200+i]): bytes([198,18,201,10+i%2]) for i in range(8)}}
M6 = {bytes.fromhex('20010002000000000000000000000010'): bytes.fromhex('20010002000000000000000000000012')}
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2), b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff
def fix_l4(proto, l4, pseudo_src, pseudo_dst, v6):
    off = {6:16, 17:6, 58:2}.get(proto)
    if off is None or len(l4) < off+2: return l4
    if proto==17 and not v6 and l4[6:8]==b'\0\0': return l4
    l4 = bytearray(l4); l4[off:off+2]=b'\0\0'
    if v6: ph = pseudo_src+pseudo_dst+struct.pack('!IxxxB', len(l4), proto)
    else: ph = pseudo_src+pseudo_dst+struct.pack('!xBH', proto, len(l4))
    c = csum(ph+bytes(l4))
    if proto==17 and c==0: c=0xffff
    l4[off:off+2]=struct.pack('!H',c); return bytes(l4)
def rewrite(f):
    f=bytearray(f); o=12
    et=struct.unpack('!H',f[o:o+2])[0]
    while et in (0x8100,0x88a8) and len(f)>=o+6:
        o+=4; et=struct.unpack('!H',f[o:o+2])[0]
    o+=2
    if et==0x0800 and len(f)>=o+20:
        ihl=(f[o]&15)*4; s=bytes(f[o+12:o+16]); d=bytes(f[o+16:o+20])
        ns, nd = M4.get(s,s), M4.get(d,d)
        if (ns,nd)==(s,d): return bytes(f)
        f[o+12:o+16]=ns; f[o+16:o+20]=nd
        f[o+10:o+12]=b'\0\0'; f[o+10:o+12]=struct.pack('!H',csum(bytes(f[o:o+ihl])))
        tot=struct.unpack('!H',f[o+2:o+4])[0]; frag=struct.unpack('!H',f[o+6:o+8])[0]&0x1fff
        if frag==0 and not (struct.unpack('!H',f[o+6:o+8])[0]&0x2000):
            l4=bytes(f[o+ihl:o+tot]); f[o+ihl:o+tot]=fix_l4(f[o+9],l4,ns,nd,False)
    elif et==0x86dd and len(f)>=o+40:
        s=bytes(f[o+8:o+24]); d=bytes(f[o+24:o+40]); ns,nd=M6.get(s,s),M6.get(d,d)
        if (ns,nd)==(s,d): return bytes(f)
        f[o+8:o+24]=ns; f[o+24:o+40]=nd
        pl=struct.unpack('!H',f[o+4:o+6])[0]
        l4=bytes(f[o+40:o+40+pl]); f[o+40:o+40+pl]=fix_l4(f[o+6],l4,ns,nd,True)
    return bytes(f)
data=open(src,'rb').read(); e='<' if struct.unpack('<I',data[:4])[0] in (0xa1b2c3d4,0xa1b23c4d) else '>'
out=[data[:24]]; off=24
while off+16<=len(data):
    h=data[off:off+16]; incl=struct.unpack(e+'IIII',h)[2]
    out.append(h+rewrite(data[off+16:off+16+incl])); off+=16+incl
open(dst,'wb').write(b''.join(out))
