"""The few rtnetlink requests a container's network setup makes, packed by hand.

This is the hot path of ``moor run``: importing pyroute2 costs more than 100 ms here (its
package imports asyncio, logging and multiprocessing), more than the whole setup budget, so
the five messages a container needs (veth pair into a netns, link up, address, route, link
delete) are written with ``struct``. pyroute2 does the slower, rarer work (bridges, route
dumps) in ``bridge.py``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
RTA_GATEWAY = 5
RTA_OIF = 4
IFF_UP = 0x1

_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLHDR = struct.Struct("=IHHII")


class NetlinkError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


class Rtnl:
    """One NETLINK_ROUTE socket, bound to the network namespace it was opened in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> bytes:
        """Send one request and wait for its acknowledgement; raise on a kernel error.
        Returns the body of the reply that came before the acknowledgement, if any."""
        self.seq += 1
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(_NLHDR.pack(_NLHDR.size + len(body), msg_type, flags, self.seq, 0) + body)
        reply = b""
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _NLHDR.size <= len(data):
                length, kind, _, seq, _ = _NLHDR.unpack_from(data, off)
                if seq == self.seq and kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + _NLHDR.size)
                    if code:
                        raise NetlinkError(-code, os.strerror(-code))
                    return reply
                if seq == self.seq:
                    reply = data[off + _NLHDR.size : off + length]
                off += (length + 3) & ~3 or len(data)

    def index_of(self, name: str) -> int:
        reply = self.request(RTM_GETLINK, 0, ifinfo() + _attr(IFLA_IFNAME, _name(name)))
        return int(_IFINFO.unpack_from(reply)[2])

    # ---- the requests a container needs ---------------------------------------------

    def add_veth(
        self,
        host_name: str,
        peer_name: str,
        peer_netns_fd: int,
        *,
        master: int,
        peer_mac: str = "",
        mtu: int = 0,
    ) -> None:
        """A veth pair: ``host_name`` on bridge ``master`` here, up; ``peer_name`` created
        directly in the namespace behind ``peer_netns_fd`` (so no name clash here), down
        (a veth cannot be brought up before its pair is complete)."""
        peer = ifinfo() + _attr(IFLA_IFNAME, _name(peer_name))
        peer += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        if peer_mac:
            peer += _attr(IFLA_ADDRESS, mac_bytes(peer_mac))
        if mtu:
            peer += _attr(IFLA_MTU, struct.pack("=I", mtu))
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
        body = ifinfo() + _attr(IFLA_IFNAME, _name(host_name))
        body += _attr(IFLA_MASTER, struct.pack("=I", master)) + _attr(IFLA_LINKINFO, info)
        if mtu:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)
        self.request(
            RTM_NEWLINK, 0, ifinfo(0, IFF_UP, IFF_UP) + _attr(IFLA_IFNAME, _name(host_name))
        )

    def link_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, ifinfo(index, IFF_UP, IFF_UP))

    def delete_link(self, name: str) -> bool:
        """Remove a link by name; False if there was none."""
        try:
            self.request(RTM_DELLINK, 0, ifinfo() + _attr(IFLA_IFNAME, _name(name)))
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        addr = socket.inet_aton(address)
        host = int.from_bytes(addr, "big")
        mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        brd = (host | ~mask & 0xFFFFFFFF).to_bytes(4, "big")
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr) + _attr(IFA_BROADCAST, brd)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, gateway: str, oif: int) -> None:
        # family, dst_len, src_len, tos, table main, proto boot, scope universe, unicast
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
        body += _attr(RTA_GATEWAY, socket.inet_aton(gateway))
        body += _attr(RTA_OIF, struct.pack("=I", oif))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)
