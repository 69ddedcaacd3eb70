'use strict';
// Installs the Node interop tests' npm packages into the build tree: the
// interop/node_deps ctest fixture runs it before the node tests.
//
// usage: node install_deps.js NPM SOURCE_DIR DEST_DIR
//
// Copies SOURCE_DIR's package.json and package-lock.json to DEST_DIR and runs
// `npm ci` there, so the exact locked versions land in DEST_DIR/node_modules.
//
// Invariants:
// - Nothing is written to SOURCE_DIR (the source tree): no node_modules, no
//   rewritten lock.
// - DEST_DIR/.installed-lock is written only after npm ci succeeded, and holds
//   the lock it installed; while it equals the source lock (and package.json
//   is unchanged) nothing is reinstalled, so a second `make test` costs
//   nothing and an interrupted install is redone.
// - Install scripts are not run (--ignore-scripts): none of the locked
//   packages needs one to work.

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');

const FILES = ['package.json', 'package-lock.json'];
const STAMP = '.installed-lock';
// A file every installed tree has; its absence means node_modules was removed.
const PROBE = path.join('node_modules', '@grpc', 'grpc-js', 'package.json');

function readOrNull(file) {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    return null;
  }
}

function upToDate(sourceDir, destDir) {
  const lock = readOrNull(path.join(sourceDir, 'package-lock.json'));
  const stamp = readOrNull(path.join(destDir, STAMP));
  const pkg = readOrNull(path.join(sourceDir, 'package.json'));
  const copied = readOrNull(path.join(destDir, 'package.json'));
  return lock !== null && stamp !== null && lock.equals(stamp) && pkg !== null &&
         copied !== null && pkg.equals(copied) && fs.existsSync(path.join(destDir, PROBE));
}

function install(npm, sourceDir, destDir) {
  fs.mkdirSync(destDir, { recursive: true });
  fs.rmSync(path.join(destDir, STAMP), { force: true });
  for (const name of FILES) fs.copyFileSync(path.join(sourceDir, name), path.join(destDir, name));
  const argv = ['ci', '--prefix', destDir, '--no-audit', '--no-fund', '--ignore-scripts',
                '--loglevel=error'];
  const started = Date.now();
  const done = childProcess.spawnSync(npm, argv, { stdio: 'inherit', cwd: destDir });
  if (done.error) {
    console.error(`install_deps: cannot run ${npm}: ${done.error.message}`);
    return 1;
  }
  if (done.status !== 0) {
    console.error(`install_deps: ${npm} ${argv.join(' ')} exited ${done.status}` +
                  ' (the npm registry must be reachable for the Node interop tests)');
    return 1;
  }
  fs.copyFileSync(path.join(sourceDir, 'package-lock.json'), path.join(destDir, STAMP));
  console.log(`install_deps: npm ci into ${destDir} took ${Date.now() - started} ms`);
  return 0;
}

function main(argv) {
  if (argv.length !== 3) {
    console.error('usage: node install_deps.js NPM SOURCE_DIR DEST_DIR');
    return 2;
  }
  const [npm, sourceDir, destDir] = argv;
  if (upToDate(sourceDir, destDir)) {
    console.log(`install_deps: ${destDir}/node_modules matches the lock; nothing to do`);
    return 0;
  }
  return install(npm, sourceDir, destDir);
}

process.exit(main(process.argv.slice(2)));
