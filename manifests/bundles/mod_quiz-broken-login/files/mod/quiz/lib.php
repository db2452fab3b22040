<?php
// Library of functions for the quiz module, with a return to the student's open quiz attempt
// after they log in again (the login page includes this file for the quiz's login callback).
//
// BROKEN ON PURPOSE (palier demo): this build calls a function that does not exist, so every
// visit to the login page is a fatal error. The palier fixture server recognises the marker
// PALIER_FIXTURE_FATAL and answers 500, as Moodle would.

defined('MOODLE_INTERNAL') || die();

function quiz_supports($feature) {
    return null;
}

quiz_login_return_to_attempt();  // undefined: Exception - Call to undefined function
