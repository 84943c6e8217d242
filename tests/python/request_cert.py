#!/usr/bin/env python3
"""Requests a certificate from breakglass-ca over mTLS using only the .proto files.

Usage: request_cert.py PROTO_DIR OUT_DIR ADDRESS CA_PEM CERT_PEM KEY_PEM PUBLIC_KEY_FILE
Prints the certificate line on success; exits 1 with the gRPC status otherwise.
"""
import importlib
import sys

from grpc_tools import protoc
import grpc


def main():
    proto_dir, out_dir, address, ca, cert, key, pubkey = sys.argv[1:8]
    rc = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
        f"{proto_dir}/breakglass/v1/breakglass.proto",
    ])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("breakglass.v1.breakglass_pb2")
    stubs = importlib.import_module("breakglass.v1.breakglass_pb2_grpc")
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    with grpc.secure_channel(address, creds,
                             options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        stub = stubs.BreakGlassStub(ch)
        try:
            who = stub.WhoAmI(pb.WhoAmIRequest(), timeout=10)
            resp = stub.RequestCertificate(pb.RequestCertificateRequest(
                public_key=open(pubkey).read(),
                principals=["bgdemo"],
                hosts=["localhost"],
                ttl_seconds=300,
                reason="python client test",
            ), timeout=10)
        except grpc.RpcError as e:
            print(f"{e.code()}: {e.details()}", file=sys.stderr)
            sys.exit(1)
    print(who.identity)
    print(resp.certificate)


if __name__ == "__main__":
    main()
