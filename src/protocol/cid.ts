/**
 * A client message id (PROTOCOL.md §7.15 `cid`, TRANSCRIPT.md §2.4): 16
 * random bytes as unpadded base64url, 22 characters. Canonical only: the
 * last character carries 2 bits, so it is one of A, Q, g, w; anything else
 * is another spelling of the same bytes. Shared by the protocol and the
 * transcript, which records it.
 */
export const CID_RE = /^[A-Za-z0-9_-]{21}[AQgw]$/;
