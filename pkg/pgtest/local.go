package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// baseDirPrefix names the base directories: baseDirPrefix<pid>-<random>.
	baseDirPrefix = "gobucardo-pgtest-"
	// osUser runs the servers when the test runs as root.
	osUser = "postgres"
	// stopGrace is how long a fast shutdown may take before it becomes an immediate one.
	stopGrace = 60 * time.Second
	// portAttempts is how many free ports a new server tries before giving up.
	portAttempts = 5
)

// confSettings are appended to the template's postgresql.conf: speed over durability against an OS crash.
// synchronous_commit stays on so that committed transactions survive Kill (see doc.go).
var confSettings = []string{
	"fsync = off",
	"full_page_writes = off",
	"shared_buffers = 16MB",
	"max_connections = 100",
	"listen_addresses = '127.0.0.1'",
	"logging_collector = off",
	"log_min_messages = warning",
	"log_line_prefix = '%m [%p] %q%u@%d '",
}

// BinDir returns the directory of the PostgreSQL server binaries the local backend uses: PGTEST_BINDIR
// if set, else `pg_config --bindir` if that directory has postgres and initdb, else the highest version
// of /usr/lib/postgresql/*/bin. The answer is found once per process.
func BinDir() (string, error) { return binDir() }

var binDir = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if !hasServer(dir) {
			return "", fmt.Errorf("PGTEST_BINDIR=%s has no postgres and initdb", dir)
		}
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServer(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin") // the pattern is valid
	slices.SortFunc(dirs, func(a, b string) int {         // highest version first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries: no pg_config --bindir, no /usr/lib/postgresql/*/bin " +
		"with postgres and initdb, no PGTEST_BINDIR")
})

func hasServer(dir string) bool {
	for _, name := range []string{"postgres", "initdb"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted versions such as "9.6" and "15" numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// localBackend runs servers from the local binaries, as copies of one initdb template.
type localBackend struct {
	availOnce sync.Once
	availErr  error
	bin       string
	cred      *syscall.Credential // the postgres OS user when root, else nil (current user)

	setupOnce sync.Once
	setupErr  error
	base      string // base directory, "" until set up
	template  string // template data directory

	seq atomic.Int64 // names cluster directories
}

func (b *localBackend) available() error {
	b.availOnce.Do(func() {
		var err error
		if b.bin, err = BinDir(); err != nil {
			b.availErr = fmt.Errorf("%w (install PostgreSQL with `apt-get install postgresql`, "+
				"or set PGTEST_BINDIR, or use PGTEST_BACKEND=docker)", err)
			return
		}
		if os.Geteuid() == 0 {
			b.cred, b.availErr = lookupCredential(osUser)
		}
	})
	return b.availErr
}

// lookupCredential returns the credential of an OS user.
func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root needs OS user %s to run PostgreSQL "+
			"(apt-get install postgresql creates it): %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of %s: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of %s: %w", name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// setup creates the base directory and the template, once.
func (b *localBackend) setup() error {
	b.setupOnce.Do(func() {
		removeStaleBaseDirs()
		base, err := os.MkdirTemp(os.TempDir(), baseDirPrefix+strconv.Itoa(os.Getpid())+"-*")
		if err != nil {
			b.setupErr = fmt.Errorf("create base dir: %w", err)
			return
		}
		b.base = base
		if err := b.mkdir(base); err != nil {
			b.setupErr = err
			return
		}
		b.template = filepath.Join(base, "template")
		b.setupErr = b.initdb(b.template)
	})
	return b.setupErr
}

// mkdir makes dir (which may exist) mode 0755 and owned by the server's user.
func (b *localBackend) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp makes 0700, and umask applies
		return fmt.Errorf("chmod dir: %w", err)
	}
	return b.chown(dir)
}

func (b *localBackend) chown(path string) error {
	if b.cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(b.cred.Uid), int(b.cred.Gid)); err != nil {
		return fmt.Errorf("chown to %s: %w", osUser, err)
	}
	return nil
}

// initdb creates the template data directory.
func (b *localBackend) initdb(dir string) error {
	cmd := exec.Command(filepath.Join(b.bin, "initdb"), "-D", dir,
		"-A", "trust", "-U", superuser, "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = b.base // the test's working directory may be unreachable for the postgres user
	cmd.Env = childEnv()
	if err := run(cmd, b.cred); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	conf, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = fmt.Fprintf(conf, "\n# pgtest\n%s\n", strings.Join(confSettings, "\n"))
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// childEnv is the environment of initdb and postgres: messages in English, nothing from the test's PG*
// variables.
func childEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

func (b *localBackend) newServer() (server, error) {
	if err := b.setup(); err != nil {
		return nil, err
	}
	dir := filepath.Join(b.base, "c"+strconv.FormatInt(b.seq.Add(1), 10))
	s := &localServer{dir: dir, bin: b.bin, cred: b.cred}
	if err := b.mkdir(dir); err != nil {
		return nil, err
	}
	if err := b.mkdir(s.sockDir()); err != nil {
		return nil, err
	}
	if err := copyTree(b.template, s.dataDir(), b.chown); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("copy template: %w", err)
	}
	var err error
	for range portAttempts {
		if s.portNum, err = reservePort(); err != nil {
			break
		}
		if err = s.start(); err == nil || !errors.Is(err, errPortInUse) {
			break
		}
		releasePort(s.portNum)
	}
	if err != nil {
		releasePort(s.portNum)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// close removes the base directory (the servers are already destroyed) and stale ones of other tests.
func (b *localBackend) close() error {
	removeStaleBaseDirs()
	if b.base == "" {
		return nil
	}
	if err := os.RemoveAll(b.base); err != nil {
		return fmt.Errorf("remove base dir: %w", err)
	}
	return nil
}

// removeStaleBaseDirs removes the base directories of test binaries that are no longer running, after
// stopping any server still running in them (which Pdeathsig should have stopped).
func removeStaleBaseDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), baseDirPrefix+"*")) // the pattern is valid
	for _, dir := range dirs {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), baseDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() || pidAlive(pid) {
			continue
		}
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "*", "data", "postmaster.pid"))
		for _, f := range pidFiles {
			stopStalePostmaster(f)
		}
		_ = os.RemoveAll(dir) // best effort: another test binary may be doing the same
	}
}

// stopStalePostmaster stops the postmaster of a postmaster.pid file, if it still runs from that data
// directory.
func stopStalePostmaster(pidFile string) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	lines := strings.SplitN(string(data), "\n", 3) // pid, data directory, ...
	if len(lines) < 2 {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte(lines[1])) {
		return // gone, or the pid was reused
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
}

// ports holds the ports reserved by servers of this process, so two of them never pick the same one.
var ports = struct {
	sync.Mutex
	inUse map[int]bool
}{inUse: make(map[int]bool)}

// errPortInUse says a server could not bind its port; another one is tried.
var errPortInUse = errors.New("port in use")

// reservePort returns a port of 127.0.0.1 that was free a moment ago and is not reserved.
func reservePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !ports.inUse[port] {
			ports.inUse[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find free port: none left")
}

func releasePort(port int) {
	ports.Lock()
	delete(ports.inUse, port)
	ports.Unlock()
}

// copyTree copies the directory tree src to dst, keeping modes, and calls chown on every copy.
func copyTree(src, dst string, chown func(string) error) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			err = os.Mkdir(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			var link string
			if link, err = os.Readlink(path); err == nil {
				err = os.Symlink(link, target)
			}
		default:
			err = copyFile(path, target, info.Mode().Perm())
		}
		if err != nil {
			return err
		}
		return chown(target)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in) // copy_file_range where the file system can
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// localServer is a postgres child process of the test binary.
type localServer struct {
	dir     string // cluster directory: data/, sock/, postgres.log
	bin     string
	cred    *syscall.Credential
	portNum int

	mu   sync.Mutex
	proc *process // nil when stopped
	gone bool     // destroyed
}

func (s *localServer) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *localServer) sockDir() string { return filepath.Join(s.dir, "sock") }
func (s *localServer) logPath() string { return filepath.Join(s.dir, "postgres.log") }

func (s *localServer) host() string { return s.sockDir() }
func (s *localServer) port() int    { return s.portNum }

func (s *localServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && s.proc.exited() == nil
}

func (s *localServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.gone:
		return errors.New("cluster is destroyed")
	case s.proc != nil && s.proc.exited() == nil:
		return errors.New("server is running")
	}
	s.proc = nil
	logFile, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("seek server log: %w", err)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"),
		"-D", s.dataDir(), "-p", strconv.Itoa(s.portNum), "-k", s.sockDir(), "-c", "listen_addresses=127.0.0.1")
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p, err := spawn(cmd, s.cred)
	if err != nil {
		return err
	}
	if err := waitReady(dsn(s.sockDir(), s.portNum, "postgres"), p.done); err != nil {
		_ = p.shutdown(syscall.SIGQUIT, 10*time.Second)
		log := s.logSince(logStart)
		if strings.Contains(log, "could not bind") || strings.Contains(log, "could not create any TCP/IP sockets") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		if exitErr := p.exited(); exitErr != nil {
			err = fmt.Errorf("%w (postgres %w)", err, exitErr)
		}
		return fmt.Errorf("start postgres on port %d: %w\nserver log:\n%s", s.portNum, err, lastLines(log, failedLogLines))
	}
	s.proc = p
	return nil
}

// waitReady polls until a server accepts connections, it exits (exited is closed), or readyTimeout.
func waitReady(connString string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(attempt, connString)
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-exited:
			return errors.New("server exited while starting")
		case <-ctx.Done():
			return fmt.Errorf("server not ready after %v: %w", readyTimeout, err)
		case <-tick.C:
		}
	}
}

func (s *localServer) stop() error {
	return s.halt(syscall.SIGINT, stopGrace) // SIGINT: fast shutdown
}

func (s *localServer) kill() error {
	return s.halt(syscall.SIGQUIT, 10*time.Second) // SIGQUIT: immediate shutdown
}

func (s *localServer) halt(sig syscall.Signal, grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errors.New("server is not running")
	}
	p := s.proc
	s.proc = nil
	if err := p.exited(); err != nil {
		return fmt.Errorf("server had exited: %w", err)
	}
	return p.shutdown(sig, grace)
}

func (s *localServer) destroy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil
	}
	s.gone = true
	var err error
	if s.proc != nil {
		err = s.proc.shutdown(syscall.SIGINT, stopGrace)
		s.proc = nil
	}
	releasePort(s.portNum)
	return errors.Join(err, os.RemoveAll(s.dir))
}

func (s *localServer) logTail(n int) string {
	return lastLines(s.logSince(-64<<10), n)
}

// logSince returns the server log from byte offset off (negative: that many bytes before the end).
func (s *localServer) logSince(off int64) string {
	f, err := os.Open(s.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if off < 0 {
		if fi, err := f.Stat(); err == nil {
			off = max(0, fi.Size()+off)
		}
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, max(off, 0), 1<<62))
	return string(b)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" || n <= 0 {
		return ""
	}
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
