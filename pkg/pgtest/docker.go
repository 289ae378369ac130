package pgtest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

const (
	// defaultImage is the image of the docker backend unless PGTEST_IMAGE says otherwise.
	defaultImage = "postgres:15"
	// labelPID and labelHost mark containers with the test binary that started them.
	labelPID  = "gobucardo-pgtest.pid"
	labelHost = "gobucardo-pgtest.host"
	// dockerStopTimeout is the grace, in seconds, docker stop gives the server before SIGKILL.
	dockerStopTimeout = 60
)

// dockerSettings are the server settings of a container (compare confSettings; the container listens on
// all of its addresses, and Docker publishes the port on 127.0.0.1 only).
var dockerSettings = []string{
	"fsync=off",
	"full_page_writes=off",
	"shared_buffers=16MB",
	"max_connections=100",
	"log_min_messages=warning",
}

// dockerBackend runs servers as containers of PGTEST_IMAGE.
type dockerBackend struct {
	once sync.Once
	err  error
	pool *dockertest.Pool
}

func (b *dockerBackend) available() error {
	b.once.Do(func() {
		pool, err := dockertest.NewPool("")
		if err == nil {
			err = pool.Client.Ping()
		}
		if err != nil {
			b.err = fmt.Errorf("docker unreachable (PGTEST_BACKEND=docker; start Docker, set DOCKER_HOST, "+
				"or unset PGTEST_BACKEND to use local binaries): %w", err)
			return
		}
		b.pool = pool
		b.removeStale()
	})
	return b.err
}

// removeStale purges the containers of this host's test binaries that are no longer running.
func (b *dockerBackend) removeStale() {
	host, _ := os.Hostname()
	containers, err := b.pool.Client.ListContainers(dc.ListContainersOptions{
		All:     true,
		Filters: map[string][]string{"label": {labelHost + "=" + host}},
	})
	if err != nil {
		return
	}
	for _, c := range containers {
		if pid, err := strconv.Atoi(c.Labels[labelPID]); err == nil && !pidAlive(pid) {
			_ = b.pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
		}
	}
}

func (b *dockerBackend) newServer() (server, error) {
	image := os.Getenv("PGTEST_IMAGE")
	if image == "" {
		image = defaultImage
	}
	repo, tag := dc.ParseRepositoryTag(image)
	host, _ := os.Hostname()
	cmd := []string{"postgres"}
	for _, s := range dockerSettings {
		cmd = append(cmd, "-c", s)
	}
	var err error
	for range portAttempts {
		var port int
		if port, err = reservePort(); err != nil {
			return nil, err
		}
		// A fixed host port (not a random one) keeps Port stable across docker stop and start.
		var res *dockertest.Resource
		res, err = b.pool.RunWithOptions(&dockertest.RunOptions{
			Repository: repo,
			Tag:        tag,
			Env:        []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
			Cmd:        cmd,
			Labels:     map[string]string{labelPID: strconv.Itoa(os.Getpid()), labelHost: host},
			PortBindings: map[dc.Port][]dc.PortBinding{
				"5432/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}},
			},
		}, func(hc *dc.HostConfig) {
			hc.AutoRemove = false
			hc.RestartPolicy = dc.RestartPolicy{Name: "no"}
		})
		if err == nil {
			s := &dockerServer{pool: b.pool, res: res, portNum: port}
			if err = s.waitReady(); err != nil {
				_ = s.destroy()
				return nil, err
			}
			return s, nil
		}
		releasePort(port)
		if !strings.Contains(err.Error(), "already allocated") && !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("run container %s: %w", image, err)
}

func (b *dockerBackend) close() error { return nil } // every container is purged by its server

// dockerServer is a container running PostgreSQL.
type dockerServer struct {
	pool    *dockertest.Pool
	res     *dockertest.Resource
	portNum int

	mu sync.Mutex
	up bool
}

func (s *dockerServer) host() string { return "127.0.0.1" }
func (s *dockerServer) port() int    { return s.portNum }

func (s *dockerServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

func (s *dockerServer) waitReady() error {
	if err := waitReady(dsn(s.host(), s.portNum, "postgres"), nil); err != nil {
		return fmt.Errorf("container %s: %w", s.res.Container.ID, err)
	}
	s.mu.Lock()
	s.up = true
	s.mu.Unlock()
	return nil
}

func (s *dockerServer) start() error {
	if err := s.pool.Client.StartContainer(s.res.Container.ID, nil); err != nil {
		return fmt.Errorf("docker start: %w", err)
	}
	return s.waitReady()
}

func (s *dockerServer) stop() error {
	s.setDown()
	if err := s.pool.Client.StopContainer(s.res.Container.ID, dockerStopTimeout); err != nil {
		return fmt.Errorf("docker stop: %w", err)
	}
	return nil
}

func (s *dockerServer) kill() error {
	s.setDown()
	if err := s.pool.Client.KillContainer(dc.KillContainerOptions{ID: s.res.Container.ID}); err != nil {
		return fmt.Errorf("docker kill: %w", err)
	}
	return nil
}

func (s *dockerServer) setDown() {
	s.mu.Lock()
	s.up = false
	s.mu.Unlock()
}

func (s *dockerServer) destroy() error {
	s.setDown()
	releasePort(s.portNum)
	if err := s.pool.Purge(s.res); err != nil && !errors.As(err, new(*dc.NoSuchContainer)) {
		return fmt.Errorf("docker purge: %w", err)
	}
	return nil
}

func (s *dockerServer) logTail(int) string { return "" }
