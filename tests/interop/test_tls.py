#!/usr/bin/python3
"""Interop: Python grpcio over TLS with a client certificate (mutual TLS).

Throwaway CA, server and client certificates made with the openssl command
line; the service runs with TLS_CLIENT_AUTH=require. Publish and
PublishStream work over grpc.ssl_channel_credentials with the client's
certificate; a channel without a client certificate, one trusting another
CA, and a plaintext channel all fail UNAVAILABLE, and the service keeps
serving the good channel.

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import os
import subprocess
import sys

import grpc

from interop_support import check_equal, main, scratch_dir

TIMEOUT = 10.0


def openssl(folder, *commands):
    for cmd in commands:
        subprocess.run(cmd, shell=True, cwd=folder, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def make_certs():
    """ca, server (localhost, 127.0.0.1), client; other-ca: a stranger."""
    folder = scratch_dir("tls_certs")
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    for ca in ("ca", "other-ca"):
        openssl(folder, f"openssl req -x509 {ec} -days 2 -subj '/CN={ca}' "
                        f"-keyout {ca}.key -out {ca}.pem")
    openssl(folder,
            "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext",
            "printf 'extendedKeyUsage=clientAuth\\n' > client.ext")
    for name in ("server", "client"):
        openssl(folder,
                f"openssl req {ec} -subj '/CN=py-{name}' -keyout {name}.key -out {name}.csr",
                f"openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                f"-days 2 -extfile {name}.ext -out {name}.pem")
    return folder


def read(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


CERTS = make_certs()
GOOD = grpc.ssl_channel_credentials(root_certificates=read(CERTS, "ca.pem"),
                                    private_key=read(CERTS, "client.key"),
                                    certificate_chain=read(CERTS, "client.pem"))


def event(stubs):
    ev = stubs.event_pb2.Event(event_type="tls.python", source_service="py-client")
    ev.data.update({"n": 1})
    return ev


def publish_over_mutual_tls(stack):
    stubs, svc = stack.stubs, stack.event_service()
    resp = svc.Publish(stubs.service_pb2.PublishRequest(event=event(stubs)), timeout=TIMEOUT)
    check_equal(bool(resp.event_id), True, "Publish answered an event id")
    reqs = [stubs.service_pb2.PublishRequest(event=event(stubs)) for _ in range(10)]
    answers = list(svc.PublishStream(iter(reqs), timeout=TIMEOUT))
    check_equal(len(answers), 10, "PublishStream answers")


def refused(stack, channel, what):
    stubs = stack.stubs
    svc = stubs.service_pb2_grpc.EventServiceStub(channel)
    try:
        svc.Publish(stubs.service_pb2.PublishRequest(event=event(stubs)), timeout=3.0)
    except grpc.RpcError as e:
        check_equal(e.code(), grpc.StatusCode.UNAVAILABLE, what)
        return
    finally:
        channel.close()
    raise AssertionError(f"{what}: published")


def bad_clients_are_refused(stack):
    no_cert = grpc.ssl_channel_credentials(root_certificates=read(CERTS, "ca.pem"))
    stranger = grpc.ssl_channel_credentials(root_certificates=read(CERTS, "other-ca.pem"))
    refused(stack, grpc.secure_channel(stack.target, no_cert), "no client certificate")
    refused(stack, grpc.secure_channel(stack.target, stranger), "a server of an untrusted CA")
    refused(stack, grpc.insecure_channel(stack.target), "plaintext against TLS")
    publish_over_mutual_tls(stack)  # still serving


def body(stack, checks):
    checks.run("Publish and PublishStream over mutual TLS", publish_over_mutual_tls, stack)
    checks.run("bad clients fail UNAVAILABLE, the service stays up", bad_clients_are_refused,
               stack)


if __name__ == "__main__":
    args = (f"--tls-cert={CERTS}/server.pem", f"--tls-key={CERTS}/server.key",
            f"--tls-client-ca={CERTS}/ca.pem", "--tls-client-auth=require")
    sys.exit(main("interop", "tls", body, service_args=args, credentials=GOOD))
