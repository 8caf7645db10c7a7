// Protocol backport for the v3.68.0 Node.js language host: the newest one the Go module proxy
// serves (later hosts are a module of their own that it does not). Engines since then send the
// program's runtime options (Pulumi.yaml `runtime.options`) and a plugin's location in a
// ProgramInfo message that v3.68's generated types do not know, so they arrive as unknown
// fields; and they run policy packs through RunPlugin, which v3.68 left unimplemented. This file
// reads those fields and implements RunPlugin; build.sh renames the host's own Run and RunPlugin
// (to runWithFlags and runPluginUnsupported) so these take their place.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/google/shlex"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Field numbers of `ProgramInfo info` in pulumi/proto/pulumi/language.proto (v3.1xx and later).
const (
	runRequestInfoField       = 14
	runPluginRequestInfoField = 5
	runPluginRequestKindField = 6
)

type programInfo struct {
	rootDirectory    string
	programDirectory string
	entryPoint       string
	options          map[string]interface{}
}

// unknownField returns the bytes of the last occurrence of a length-delimited field.
func unknownField(msg proto.Message, number protowire.Number) []byte {
	var found []byte
	b := msg.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return found
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return found
		}
		if num == number && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[:m])
			found = v
		}
		b = b[m:]
	}
	return found
}

func parseProgramInfo(b []byte) (*programInfo, error) {
	if b == nil {
		return nil, nil
	}
	info := &programInfo{options: map[string]interface{}{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[m:]
		switch num {
		case 1:
			info.rootDirectory = string(v)
		case 2:
			info.programDirectory = string(v)
		case 3:
			info.entryPoint = string(v)
		case 4:
			var options structpb.Struct
			if err := proto.Unmarshal(v, &options); err != nil {
				return nil, fmt.Errorf("runtime options: %w", err)
			}
			info.options = options.AsMap()
		}
	}
	return info, nil
}

// applyOptions sets what v3.68 read from its -typescript, -nodeargs and -tsconfig flags.
func (host *nodeLanguageHost) applyOptions(info *programInfo) {
	if info == nil {
		return
	}
	host.typescript = true
	if v, ok := info.options["typescript"].(bool); ok {
		host.typescript = v
	}
	host.nodeargs, _ = info.options["nodeargs"].(string)
	host.tsconfigpath, _ = info.options["tsconfig"].(string)
}

// Run is the RPC endpoint for LanguageRuntimeServer::Run, with the options the engine sent.
func (host *nodeLanguageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info, err := parseProgramInfo(unknownField(req, runRequestInfoField))
	if err != nil {
		return nil, err
	}
	host.applyOptions(info)
	return host.runWithFlags(ctx, req)
}

// RunPlugin runs a plugin written in Node.js: a policy pack (`run-policy-pack`) or a resource
// provider (`run-plugin`), in its own directory, streaming its output back to the engine.
func (host *nodeLanguageHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer,
) error {
	info, err := parseProgramInfo(unknownField(req, runPluginRequestInfoField))
	if err != nil {
		return err
	}
	if info == nil || info.programDirectory == "" {
		return fmt.Errorf("RunPlugin: the engine sent no plugin directory")
	}
	host.applyOptions(info)
	kind := string(unknownField(req, runPluginRequestKindField))

	entry := "@pulumi/pulumi/cmd/run-plugin"
	if kind == "analyzer" {
		entry = "@pulumi/pulumi/cmd/run-policy-pack"
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("could not find node on the $PATH: %w", err)
	}
	resolve := exec.Command(nodeBin, "-e", fmt.Sprintf("console.log(require.resolve(%q))", entry))
	resolve.Dir = info.programDirectory
	resolved, err := resolve.Output()
	if err != nil {
		return fmt.Errorf("it looks like the plugin's dependencies are not installed in %s (%s): %w",
			info.programDirectory, entry, err)
	}

	nodeargs, err := shlex.Split(host.nodeargs)
	if err != nil {
		return err
	}
	args := append(nodeargs, strings.TrimSpace(string(resolved)))
	args = append(args, req.GetArgs()...)
	args = append(args, info.programDirectory)

	// #nosec G204
	cmd := exec.Command(nodeBin, args...)
	cmd.Dir = info.programDirectory
	cmd.Env = append(os.Environ(), req.GetEnv()...)
	if host.typescript {
		cmd.Env = append(cmd.Env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if host.tsconfigpath != "" {
		cmd.Env = append(cmd.Env, "PULUMI_NODEJS_TSCONFIG_PATH="+host.tsconfigpath)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}

	lines := make(chan *pulumirpc.RunPluginResponse)
	forward := func(r interface{ Read([]byte) (int, error) }, wrap func([]byte) *pulumirpc.RunPluginResponse) {
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for scanner.Scan() {
			lines <- wrap(append(scanner.Bytes(), '\n'))
		}
		lines <- nil
	}
	go forward(stdout, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	go forward(stderr, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	for open := 2; open > 0; {
		line := <-lines
		if line == nil {
			open--
			continue
		}
		if err := server.Send(line); err != nil {
			_ = cmd.Process.Kill()
		}
	}

	exitCode := int32(0)
	if err := cmd.Wait(); err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			return err
		}
		exitCode = int32(exitErr.ExitCode())
	}
	return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: exitCode}})
}
