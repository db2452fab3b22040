<?php
// The real-Moodle test reads a language string as the site gives it, through Moodle's string
// cache (the test checks that a rollback purges that cache):
//   php string.php CODEROOT IDENTIFIER COMPONENT
define('CLI_SCRIPT', true);
$args = $argv;
require($args[1] . '/config.php');
echo get_string($args[2], $args[3]);
