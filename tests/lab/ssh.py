"""Manage a lab router over SSH, as an operator manages a remote one.

The netns connection plugin cannot be cut off from a router, so a change that
cuts the operator's own management path needs a real one to be tested:
a controller namespace, ``ctl``, on the lab's internet core, reaches the
router's first uplink address (198.51.100.2) by SSH through isp1, and the
router answers by its main default route. Debian's sshd runs inside the router
namespace (never in the host's), listening on that address only, with a host
key and a client key made for this lab under its state directory; killed when
the management stops and, like any process of the lab, at the lab's teardown.

    topology = ssh.with_controller(topologies.two_isp())
    with Lab(topology) as lab, ssh.Management(lab) as management:
        management.playbook(PLAYBOOK, extra_vars={...})

The inventory keeps Ansible's default multiplexing (a master connection that
tasks share, which meta reset_connection stops), as operators run it;
``Management(lab, control_master=False)`` makes every task a new connection.
Connections end within about 3 s once their replies stop (ServerAlive*), so
a change that cuts the path fails its task instead of hanging the play.

Why through an uplink and not on a link of its own to the router: each role
keeps the main table's routes other than the default ones ahead of its own
(source_routing copies them into its tables, split_access looks them up
first), so no role change can cut a directly connected controller. One the
router reaches by its default route, as across the internet, can be cut.
"""
import contextlib
import os
import socket
import subprocess
import time

from tests.lab import netns as _netns
from tests.lab.playbook import run_playbook

SSHD = '/usr/sbin/sshd'
# /run/sshd: the privilege separation directory sshd insists on, as the package's unit makes it
PRIVSEP_DIR = '/run/sshd'
CONTROLLER = 'ctl'
DEBIAN_ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# The controller's management link to the internet core: shared address space
# no topology uses (ISP cores are 100.64.N.0/30 with small N).
CONTROLLER_ADDRESS = '100.64.200.2'
CORE_ADDRESS = '100.64.200.1'
ROUTER_ADDRESS = '198.51.100.2'  # the router's address on isp1's link (topologies._UPLINKS)


def with_controller(topology, core='inet'):
    """``topology`` plus the controller node, linked to ``core`` (the internet
    core) by 100.64.200.0/30; returns the same dict."""
    topology['nodes'][CONTROLLER] = {
        'addresses': {'eth0': [CONTROLLER_ADDRESS + '/30']},
        'routes': ['default via %s' % CORE_ADDRESS],
    }
    topology['nodes'][core]['addresses']['mgmt0'] = [CORE_ADDRESS + '/30']
    topology['links'].append({'a': '%s:mgmt0' % core, 'b': '%s:eth0' % CONTROLLER})
    return topology


class Management:
    """sshd in ``router``, reached from the controller node of the lab (see with_controller)."""

    def __init__(self, lab, router='router', address=ROUTER_ADDRESS, controller=CONTROLLER, control_master=True):
        self.lab = lab
        self.control_master = control_master
        self.router = router
        self.address = address
        self.controller = controller
        self.dir = os.path.join(lab.state_dir, 'ssh')
        self.client_key = os.path.join(self.dir, 'client_key')
        self._sshd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        os.makedirs(self.dir, mode=0o700)
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        host_key = os.path.join(self.dir, 'host_key')
        for key in (host_key, self.client_key):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'netpolicy-lab', '-f', key],
                           check=True, capture_output=True)
        os.rename(self.client_key + '.pub', os.path.join(self.dir, 'authorized_keys'))
        home = os.path.join(self.dir, 'home')
        os.makedirs(home, mode=0o700)
        config = os.path.join(self.dir, 'sshd_config')
        with open(config, 'w') as handle:
            handle.write('\n'.join([
                'ListenAddress %s:22' % self.address,
                'HostKey %s' % host_key,
                'PidFile %s' % os.path.join(self.dir, 'sshd.pid'),
                'AuthorizedKeysFile %s' % os.path.join(self.dir, 'authorized_keys'),
                'PermitRootLogin prohibit-password',
                'PasswordAuthentication no',
                'KbdInteractiveAuthentication no',
                'UsePAM no',
                'Subsystem sftp internal-sftp',
                # A router's root: Debian's PATH, and a home without the host's ~/.bashrc (which
                # puts the machine's pyenv python3 first and takes a second a command).
                'SetEnv HOME=%s PATH=%s' % (home, DEBIAN_ROOT_PATH),
            ]) + '\n')
        with open(os.path.join(self.dir, 'sshd.log'), 'w') as log:
            self._sshd = subprocess.Popen(['ip', 'netns', 'exec', self.lab.name(self.router), SSHD, '-D', '-e', '-f', config],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Kill sshd (its sessions go with the lab's teardown); idempotent."""
        if self._sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                self._sshd.kill()
            self._sshd.wait(timeout=10)
            self._sshd = None

    def _wait_listening(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not self.reachable(timeout=1.0):
            if self._sshd.poll() is not None:
                raise RuntimeError('sshd in %s exited: %s' % (self.router, self.log()))
            if time.monotonic() > deadline:
                raise RuntimeError('sshd in %s not answering after %.0f s: %s' % (self.router, timeout, self.log()))
            time.sleep(0.1)

    def log(self):
        with open(os.path.join(self.dir, 'sshd.log')) as handle:
            return handle.read().strip()

    def reachable(self, timeout=1.0):
        """True if sshd's banner reaches the controller within ``timeout``: the management path works."""
        sock = _netns.tcp_socket(self.lab.name(self.controller), socket.AF_INET)
        try:
            sock.settimeout(timeout)
            sock.connect((self.address, 22))
            return sock.recv(64).startswith(b'SSH-')
        except OSError:
            return False
        finally:
            sock.close()

    def inventory(self):
        """The lab's inventory of the router (its per-node variables), reached by SSH."""
        inventory = self.lab.inventory([self.router])
        inventory['all']['hosts'][self.router].update({
            'ansible_connection': 'ssh',
            'ansible_host': self.address,
            'ansible_user': 'root',
            'ansible_ssh_private_key_file': self.client_key,
            'ansible_ssh_host_key_checking': False,
            # ServerAlive: a session whose replies a change cut off ends within ~3 s, not hangs.
            'ansible_ssh_args': ' '.join(self._multiplexing() + ['-o ServerAliveInterval=1', '-o ServerAliveCountMax=3']),
            'ansible_control_path_dir': os.path.join(self.dir, 'cp'),
            # curve25519: cheaper than the default post-quantum key exchange, on a busy machine
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'
                                       ' -o KexAlgorithms=curve25519-sha256',
            'ansible_ssh_timeout': 5,
            'ansible_ssh_retries': 0,
            'ansible_python_interpreter': '/usr/bin/python3',
            # the roles must work with it, and it saves a connection or three per task
            'ansible_pipelining': True,
            # files go through ssh itself, as commands do: no sftp subsystem involved
            'ansible_ssh_transfer_method': 'piped',
        })
        return inventory

    def _multiplexing(self):
        if self.control_master:
            # Ansible's default: a master connection per host that tasks reuse (meta
            # reset_connection stops it, so the connection after it is a new one)
            return ['-o ControlMaster=auto', '-o ControlPersist=60s']
        return ['-o ControlMaster=no', '-o ControlPath=none']  # every task a new connection

    def playbook(self, playbook, extra_vars=None, timeout=120):
        """Run ``playbook`` from the controller namespace against the router over SSH;
        the CompletedProcess, or LabCommandError (with the output) if it fails."""
        return run_playbook(self.lab, playbook, extra_vars=extra_vars, inventory=self.inventory(),
                            netns=self.lab.name(self.controller), timeout=timeout)
