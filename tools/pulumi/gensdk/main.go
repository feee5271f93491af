// Command gensdk generates the Python, TypeScript and Go SDKs from schema.json with the code
// generators of the pinned Pulumi release (github.com/pulumi/pulumi/pkg/v3/codegen/{python,nodejs,go}):
// the generators that `pulumi package gen-sdk --language LANG` runs inside each language host. It
// exists because the Python language host of the pinned release is not served by the module proxy
// this project builds from (see ../python-host/go.mod), so the CLI's gen-sdk cannot reach it; the
// other two languages go through the same tool so that all three come from one schema binding path.
//
//	gensdk SCHEMA_JSON SDK_DIR   writes SDK_DIR/python, SDK_DIR/nodejs and SDK_DIR/go
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blang/semver"
	gogen "github.com/pulumi/pulumi/pkg/v3/codegen/go"
	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/python"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

// noDependencies is the loader for a schema that references no other package.
type noDependencies struct{}

func (noDependencies) LoadPackage(name string, _ *semver.Version) (*schema.Package, error) {
	return nil, fmt.Errorf("schema.json references package %q: envvars has no package dependencies", name)
}

func (l noDependencies) LoadPackageV2(_ context.Context, d *schema.PackageDescriptor) (*schema.Package, error) {
	return l.LoadPackage(d.Name, nil)
}

func (l noDependencies) LoadPackageReference(name string, v *semver.Version) (schema.PackageReference, error) {
	return nil, fmt.Errorf("schema.json references package %q: envvars has no package dependencies", name)
}

func (l noDependencies) LoadPackageReferenceV2(
	_ context.Context, d *schema.PackageDescriptor,
) (schema.PackageReference, error) {
	return l.LoadPackageReference(d.Name, nil)
}

// generators maps each SDK directory to its generator, called with the arguments its language
// host passes for `pulumi package gen-sdk` (no overlays, no local dependencies, a published SDK).
var generators = map[string]func(*schema.Package) (map[string][]byte, error){
	"python": func(pkg *schema.Package) (map[string][]byte, error) {
		return python.GeneratePackage("pulumi", pkg, nil, noDependencies{})
	},
	"nodejs": func(pkg *schema.Package) (map[string][]byte, error) {
		return nodejs.GeneratePackage("pulumi-language-nodejs", pkg, nil, nil, false, noDependencies{})
	},
	"go": func(pkg *schema.Package) (map[string][]byte, error) {
		return gogen.GeneratePackage("pulumi-language-go", pkg, nil)
	},
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gensdk SCHEMA_JSON SDK_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "gensdk:", err)
		os.Exit(1)
	}
}

func run(schemaPath, sdkDir string) error {
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	for language, generate := range generators {
		// Each generator records its language's options on the package, so each gets its own binding.
		var spec schema.PackageSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			return fmt.Errorf("%s: %w", schemaPath, err)
		}
		pkg, diags, err := schema.BindSpec(spec, noDependencies{}, schema.ValidationOptions{})
		if err != nil {
			return err
		}
		if diags.HasErrors() {
			return diags
		}
		files, err := generate(pkg)
		if err != nil {
			return fmt.Errorf("%s: %w", language, err)
		}
		if err := write(filepath.Join(sdkDir, language), files); err != nil {
			return err
		}
	}
	return nil
}

// write replaces outDir with exactly the generated files.
func write(outDir string, files map[string][]byte) error {
	if err := os.RemoveAll(outDir); err != nil {
		return err
	}
	for name, content := range files {
		path := filepath.Join(outDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
