"""EmailService: one send API over SMTP, SendGrid and AWS SES, with templates, suppressions and tracking.

Other services use it through `ionflux.email.interface.EmailSender` (`platform.services["email"]`).
"""
