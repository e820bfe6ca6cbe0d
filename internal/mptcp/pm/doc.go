// Package pm is a client for the Linux MPTCP path manager over generic
// netlink (family "mptcp_pm", the interface behind `ip mptcp`): endpoints,
// limits and the event multicast group. No Go library speaks this family;
// the commands follow the kernel selftest pm_nl_ctl and iproute2's ipmptcp.c.
//
// All path-manager state is per network namespace. Open binds to the netns
// of the calling thread, so a caller that manages another namespace opens
// the PM while switched into it (netlab's NS.Do does that); the PM remembers
// the namespace for Events.
//
// Attribute encoding and decoding are pure functions (encodeAddrRequest,
// decodeEndpoint, decodeLimits, decodeEvent) tested without root;
// pm_linux.go only sends and receives.
//
// Byte orders, which differ between attributes: in an endpoint the IPv4
// address is in network order and the port in host order (the yaml spec
// said big-endian until a 2024 fix); in events both addresses and ports are
// in network order.
package pm
